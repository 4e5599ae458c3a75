package tap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/songgao/water"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
)

// TAP is a Linux TAP device opened with songgao/water, the plain path
// (offload = false): frames are plain Ethernet frames (no packet-information
// or vnet header), one per read or write. The device is not
// persistent: it disappears when the TAP is closed or the process dies,
// whichever namespace it has been moved to.
type TAP struct {
	ifce *water.Interface
	name string
}

// tunPath is the clone device every TAP is opened through.
const tunPath = "/dev/net/tun"

// OpenTAP creates a TAP device called name in the calling thread's network
// namespace. The descriptor is non-blocking and managed by the Go netpoller,
// so Close unblocks a pending ReadFrame.
func OpenTAP(name string) (*TAP, error) {
	if len(name) == 0 || len(name) > 15 {
		return nil, fmt.Errorf("open TAP %q: interface names are 1 to 15 bytes", name)
	}
	// water reports a bare errno without the path; look first so a missing
	// device or a missing privilege gets a message that says what to do.
	if _, err := os.Stat(tunPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open %s: no such device (load the tun module; uswitch run needs root)", tunPath)
		}
		return nil, fmt.Errorf("open %s: %w (uswitch run needs root)", tunPath, unwrapPath(err))
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("open %s: create TAP %q: %w (uswitch run needs root)", tunPath, name, err)
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("open %s: %w (load the tun module; uswitch run needs root)", tunPath, err)
		}
		return nil, fmt.Errorf("open %s: create TAP %q: %w", tunPath, name, err)
	}
	return &TAP{ifce: ifce, name: ifce.Name()}, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Name returns the name the device was created with. Renaming the device
// later (for example after moving it into a namespace) does not change it.
func (t *TAP) Name() string { return t.name }

// ReadFrame implements Port: it blocks until the kernel hands the TAP a
// frame, always a plain one. After Close it returns ErrClosed.
func (t *TAP) ReadFrame(b []byte) (int, packet.Offload, error) {
	n, err := t.ifce.Read(b)
	if err != nil {
		return 0, packet.Offload{}, portErr("TAP", t.name, "read", err)
	}
	return n, packet.Offload{}, nil
}

// WriteFrame implements Port: it injects frame into the kernel as if it had
// been received by the TAP device, segmented first if off asks for it. It
// does not keep frame.
func (t *TAP) WriteFrame(frame []byte, off packet.Offload) error {
	return gso.Wire(frame, off, t.write)
}

func (t *TAP) write(frame []byte) error {
	if _, err := t.ifce.Write(frame); err != nil {
		return portErr("TAP", t.name, "write", err)
	}
	return nil
}

// Close implements Port. The (non-persistent) device goes away with it.
func (t *TAP) Close() error {
	if err := t.ifce.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("TAP %s: close: %w", t.name, err)
	}
	return nil
}

// portErr maps the os package's "file already closed" to ErrClosed and adds
// context to every other error.
func portErr(kind, name, op string, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%s %s: %s: %w", kind, name, op, unwrapPath(err))
}
