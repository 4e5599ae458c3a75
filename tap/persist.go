package tap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SetPersist makes the device outlive its descriptor (TUNSETPERSIST): it
// stays, with its addresses and routes, when the TAP is closed or the
// process dies, until it is deleted (ip link del, or with its namespace).
// OpenVnetTAP of the same name in the same namespace attaches to it again.
func (t *VnetTAP) SetPersist(on bool) error {
	v := 0
	if on {
		v = 1
	}
	if err := t.d.ioctlInt(unix.TUNSETPERSIST, v); err != nil {
		return fmt.Errorf("TAP %s: TUNSETPERSIST: %w", t.name, err)
	}
	return nil
}

// ioctlInt runs an ioctl with an integer argument on the descriptor.
func (d *desc) ioctlInt(req uint, v int) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed.Load() {
		return ErrClosed
	}
	return unix.IoctlSetInt(d.fd, req, v)
}
