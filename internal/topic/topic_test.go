package topic

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"#", "a/b", true}, {"+/+", "a/b", true},
		{"+", "a/b", false}, {"a/+/c", "a//c", true}, {"#", "$SYS/x", false}, {"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true}, {"a", "a/b", false}, {"a/b", "a", false}, {"a/+", "a", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Match(tt.filter, tt.topic), "%q ~ %q", tt.filter, tt.topic)
	}
}

func FuzzTopicValidation(f *testing.F) {
	for _, s := range []string{"a/b", "a/+/c", "#", "$share/g/a/#", "a/#/b", "\x00", "\xff", "+a", ""} {
		f.Add(s, "a/b")
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		topicErr := Validate(topic)
		_, filterErr := ValidateFilter(filter)
		if topicErr == nil {
			// A valid topic is a valid filter that matches itself.
			_, err := ValidateFilter(topic)
			require.NoError(t, err)
			require.True(t, Match(topic, topic) || topic[0] == '$')
		}
		if topicErr == nil && filterErr == nil {
			_ = Match(filter, topic) // must not panic
		}
		for _, err := range []error{topicErr, filterErr} {
			if err != nil {
				require.True(t, errors.Is(err, errs.InvalidTopic))
			}
		}
	})
}
