// Package topic validates MQTT topic names and filters and matches one
// against the other (MQTT 3.1.1 section 4.7).
package topic

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// Validate checks a topic name for PUBLISH: not empty, valid UTF-8, no
// NUL, no wildcards, at most 65535 bytes.
func Validate(topic string) error {
	if err := validateUTF8(topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: %q: wildcards are not allowed in a topic name", errs.InvalidTopic, topic)
	}
	return nil
}

// ValidateFilter checks a topic filter for SUBSCRIBE: '#' only as the last
// level, '+' only as a whole level; a shared subscription must be
// $share/group/filter. It returns the filter that topics are matched
// against ($share/group/filter → filter).
func ValidateFilter(filter string) (match string, err error) {
	match = filter
	if strings.HasPrefix(filter, "$share/") {
		parts := strings.SplitN(filter, "/", 3)
		if len(parts) < 3 || parts[1] == "" || strings.ContainsAny(parts[1], "+#") {
			return "", fmt.Errorf("%w: %q: a shared subscription is $share/group/filter", errs.InvalidTopic, filter)
		}
		match = parts[2]
	}
	if err := validateUTF8(match); err != nil {
		return "", err
	}
	levels := strings.Split(match, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return "", fmt.Errorf("%w: %q: '#' must be the last level", errs.InvalidTopic, filter)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return "", fmt.Errorf("%w: %q: a wildcard must occupy a whole level", errs.InvalidTopic, filter)
		}
	}
	return match, nil
}

func validateUTF8(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", errs.InvalidTopic)
	case len(s) > 65535:
		return fmt.Errorf("%w: %d bytes, more than 65535", errs.InvalidTopic, len(s))
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", errs.InvalidTopic)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%w: contains NUL", errs.InvalidTopic)
	}
	return nil
}

// Match reports whether topic matches filter: '+' is one level, '#' the
// rest, and wildcards at the first level do not match topics starting
// with '$'.
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, fRest, fMore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, tRest, tMore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fMore || !tMore {
			// "a/#" also matches "a".
			return fMore == tMore || (!tMore && fRest == "#")
		}
		filter, topic = fRest, tRest
	}
}
