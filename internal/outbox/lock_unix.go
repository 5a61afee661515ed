//go:build unix

package outbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// lockDir takes the outbox directory for this process, or fails at once
// when another one has it: bbolt's own lock would only time out.
func lockDir(dir string) (io.Closer, error) {
	f, err := os.OpenFile(filepath.Join(dir, "outbox.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("durable outbox %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", errs.OutboxLocked, dir)
		}
		return nil, fmt.Errorf("durable outbox %s: locking: %w", dir, err)
	}
	return f, nil
}
