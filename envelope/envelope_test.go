package envelope

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt"
)

func TestEnvelopeAndDedupeHandler(t *testing.T) {
	sealed := Seal("key-1", []byte("body"))
	key, body, ok := Open(sealed)
	require.True(t, ok)
	require.Equal(t, "key-1", key)
	require.Equal(t, []byte("body"), body)
	_, plain, ok := Open([]byte("plain"))
	require.False(t, ok)
	require.Equal(t, []byte("plain"), plain)

	var got []string
	h := DedupeHandler(2, func(m steadymqtt.Message) { got = append(got, string(m.Payload)) })
	for _, k := range []string{"a", "b", "a", "c", "a", "b"} {
		h(steadymqtt.Message{Payload: Seal(k, []byte(k))})
	}
	h(steadymqtt.Message{Payload: []byte("raw")})
	h(steadymqtt.Message{Payload: []byte("raw")})
	// Window 2: "a" is forgotten once "b" and "c" came after it.
	require.Equal(t, []string{"a", "b", "c", "a", "b", "raw", "raw"}, got)
}
