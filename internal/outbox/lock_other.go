//go:build !unix

package outbox

import (
	"io"
)

type noLock struct{}

func (noLock) Close() error { return nil }

// lockDir leaves the exclusion to bbolt's own file lock here.
func lockDir(string) (io.Closer, error) { return noLock{}, nil }
