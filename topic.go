package steadymqtt

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// validateTopic checks a topic name for PUBLISH (MQTT 3.1.1 section 4.7):
// not empty, valid UTF-8, no NUL, no wildcards, at most 65535 bytes.
func validateTopic(topic string) error {
	if err := validateUTF8(topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: %q: wildcards are not allowed in a topic name", ErrInvalidTopic, topic)
	}
	return nil
}

// validateFilter checks a topic filter for SUBSCRIBE: '#' only as the last
// level, '+' only as a whole level.
func validateFilter(filter string) error {
	if err := validateUTF8(filter); err != nil {
		return err
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("%w: %q: '#' must be the last level", ErrInvalidTopic, filter)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("%w: %q: a wildcard must occupy a whole level", ErrInvalidTopic, filter)
		}
	}
	return nil
}

func validateUTF8(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(s) > 65535:
		return fmt.Errorf("%w: %d bytes, more than 65535", ErrInvalidTopic, len(s))
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidTopic)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%w: contains NUL", ErrInvalidTopic)
	}
	return nil
}
