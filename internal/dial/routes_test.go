package dial

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// A host with only the rules every Linux host has is judged by its main
// table; lo always has routes there (its own address).
func TestRoutesViaReadsTheMainTable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("skipping: the routing table is read on Linux only")
	}
	if policyRouting() {
		t.Skip("skipping: this host has routing rules of its own; the main table is not consulted then")
	}
	routes, ok := routesVia("eth-none-such")
	require.True(t, ok)
	require.Empty(t, routes)
}
