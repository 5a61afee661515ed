package steadymqtt

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConnectRefusedErrorClassification(t *testing.T) {
	sentinels := []error{ErrBadProtocolVersion, ErrIdentifierRejected, ErrServerUnavailable, ErrBadCredentials, ErrNotAuthorized}
	want := map[byte][]error{
		1: {ErrBadProtocolVersion},
		2: {ErrIdentifierRejected},
		3: {ErrServerUnavailable},
		4: {ErrBadCredentials, ErrNotAuthorized},
		5: {ErrNotAuthorized},
		9: {},
	}
	for code, matches := range want {
		err := error(&ConnectRefusedError{Code: code, Broker: "tcp://h:1883"})
		require.ErrorIs(t, err, ErrRefused)
		for _, s := range sentinels {
			require.Equal(t, contains(matches, s), errors.Is(err, s), "code %d vs %v", code, s)
		}
		require.Contains(t, err.Error(), "tcp://h:1883")
	}
}

func contains(list []error, e error) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}
