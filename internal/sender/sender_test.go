package sender

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// A server's DISCONNECT carries a reason code too: it ends the
// connection and says nothing about the messages in flight, which must go
// out again, not fail.
func TestOnlyTheBrokersAnswerToAMessageRefusesIt(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&errs.ReasonCodeError{Code: 0x87, Packet: "PUBACK"}, true},
		{&errs.ReasonCodeError{Code: 0x97, Packet: "PUBREC"}, true},
		{&errs.ReasonCodeError{Code: 0x92, Packet: "PUBCOMP"}, true},
		{&errs.ReasonCodeError{Code: 0x9B, Packet: "PUBLISH"}, true},
		{&errs.ReasonCodeError{Code: 0x8B, Packet: "DISCONNECT"}, false},
		{fmt.Errorf("connection lost before the acknowledgement: %w", &errs.ReasonCodeError{Code: 0x8E, Packet: "DISCONNECT"}), false},
		{fmt.Errorf("%w: EOF", errs.NotConnected), false},
		{nil, false},
	} {
		require.Equal(t, tc.want, refused(tc.err), "%v", tc.err)
	}
}
