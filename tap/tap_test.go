package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/internal/testenv"
)

// auxCmsg builds a PACKET_AUXDATA control message as the kernel sends it.
func auxCmsg(status uint32, tci, tpid uint16) []byte {
	oob := make([]byte, unix.CmsgSpace(sizeofAuxdata))
	h := unix.CmsgLen(sizeofAuxdata)
	if unix.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(oob[0:8], uint64(h))
	} else {
		binary.NativeEndian.PutUint32(oob[0:4], uint32(h))
	}
	off := unix.SizeofCmsghdr - 8
	binary.NativeEndian.PutUint32(oob[off:], unix.SOL_PACKET)
	binary.NativeEndian.PutUint32(oob[off+4:], unix.PACKET_AUXDATA)
	d := oob[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint32(d[0:4], status)
	binary.NativeEndian.PutUint16(d[16:18], tci)
	binary.NativeEndian.PutUint16(d[18:20], tpid)
	return oob
}

func TestRestoreVLAN(t *testing.T) {
	frame := []byte{
		1, 2, 3, 4, 5, 6, // dst
		7, 8, 9, 10, 11, 12, // src
		0x08, 0x06, // ARP
		0xaa, 0xbb,
	}
	b := make([]byte, 64)
	n := copy(b, frame)

	// No auxdata, or auxdata without a tag: unchanged.
	if got := restoreVLAN(b, n, nil); got != n {
		t.Fatalf("no oob: n = %d, want %d", got, n)
	}
	if got := restoreVLAN(b, n, auxCmsg(0, 0, 0)); got != n || !bytes.Equal(b[:n], frame) {
		t.Fatalf("untagged: got % x", b[:got])
	}

	// 802.1Q tag without TPID-valid: 0x8100 is assumed.
	got := restoreVLAN(b, n, auxCmsg(unix.TP_STATUS_VLAN_VALID, 0x2064, 0))
	want := append(append(append([]byte{}, frame[:12]...), 0x81, 0x00, 0x20, 0x64), frame[12:]...)
	if !bytes.Equal(b[:got], want) {
		t.Fatalf("tagged:\n got % x\nwant % x", b[:got], want)
	}

	// 802.1ad TPID is kept.
	n = copy(b, frame)
	got = restoreVLAN(b, n, auxCmsg(unix.TP_STATUS_VLAN_VALID|unix.TP_STATUS_VLAN_TPID_VALID, 5, 0x88a8))
	want = append(append(append([]byte{}, frame[:12]...), 0x88, 0xa8, 0x00, 0x05), frame[12:]...)
	if !bytes.Equal(b[:got], want) {
		t.Fatalf("802.1ad:\n got % x\nwant % x", b[:got], want)
	}

	// No room for the tag: the frame is returned as is, never out of bounds.
	small := append([]byte{}, frame...)
	if got := restoreVLAN(small, len(small), auxCmsg(unix.TP_STATUS_VLAN_VALID, 1, 0)); got != len(small) {
		t.Fatalf("no room: n = %d", got)
	}

	// Garbage control data never panics.
	for _, oob := range [][]byte{{1}, make([]byte, 16), bytes.Repeat([]byte{0xff}, 40)} {
		restoreVLAN(b, n, oob)
	}
}

func TestOpenTAPBadName(t *testing.T) {
	for _, name := range []string{"", "a-name-that-is-too-long"} {
		if _, err := OpenTAP(name); err == nil || !strings.Contains(err.Error(), "1 to 15 bytes") {
			t.Errorf("OpenTAP(%q) = %v, want a name error", name, err)
		}
	}
}

func TestOpenPacketBadIndex(t *testing.T) {
	if _, err := OpenPacket("x", 0, false, false); err == nil {
		t.Fatal("OpenPacket with ifindex 0 succeeded")
	}
}

func TestEthtoolBadName(t *testing.T) {
	if err := DisableOffloads(strings.Repeat("x", 16)); err == nil {
		t.Fatal("DisableOffloads accepted a 16-byte name")
	}
}

func TestPortErr(t *testing.T) {
	if err := portErr("TAP", "t0", "read", os.ErrClosed); err != ErrClosed {
		t.Fatalf("closed: %v", err)
	}
	err := portErr("TAP", "t0", "read", &os.PathError{Op: "read", Path: "tun", Err: unix.EIO})
	if !errors.Is(err, unix.EIO) || err.Error() != "TAP t0: read: input/output error" {
		t.Fatalf("eio: %v", err)
	}
}

// TestOpenTAPNeedsRoot checks the error without privileges; under root it
// runs in a child process as the user nobody.
func TestOpenTAPNeedsRoot(t *testing.T) {
	if !testenv.Unprivileged(t) {
		return
	}
	_, err := OpenTAP("ustpnoroot")
	if err == nil || !strings.Contains(err.Error(), "uswitch run needs root") {
		t.Fatalf("OpenTAP without root: %v", err)
	}
}
