package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// synFloodConfig: a small connection table so that the flood fills it;
// front with f publishing 80/tcp as 8080.
func synFloodConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[defaults]
conntrack_max = 4096

[uplink]
address = "10.254.96.2/30"
host_address = "10.254.96.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.96.0.0/24"

[[endpoint]]
name = "%[1]s-f"
network = "front"
publish = ["8080:80/tcp"]
`, name)
}

// synFlooder sends TCP SYNs with spoofed sources from a raw socket in a
// namespace.
type synFlooder struct {
	fd  int
	dst netip.AddrPort
	buf [40]byte
}

func newSynFlooder(t *testing.T, ns string, dst netip.AddrPort) *synFlooder {
	t.Helper()
	var fd int
	var err error
	inNetns(t, ns, func() { fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW) })
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	return &synFlooder{fd: fd, dst: dst}
}

// send sends one SYN from src:sport.
func (f *synFlooder) send(src [4]byte, sport uint16) error {
	b := f.buf[:]
	dst := f.dst.Addr().As4()
	packet.IPv4(b).Encode(&packet.IPv4Fields{TotalLen: 40, ID: sport, TTL: 64, Protocol: packet.ProtoTCP, Src: src, Dst: dst})
	tcp := packet.TCP(b[20:])
	tcp.Encode(&packet.TCPFields{SrcPort: sport, DstPort: f.dst.Port(), Seq: uint32(sport) * 7919,
		DataOffset: packet.TCPMinHeaderLen, Flags: packet.TCPSyn, Window: 64240})
	tcp.ComputeChecksum(src, dst)
	return syscall.Sendto(f.fd, b, 0, &syscall.SockaddrInet4{Addr: dst})
}

// A SYN flood from 200 000 spoofed sources on a published port with a
// listener (which answers every SYN, so the table fills with SYN_RECV
// entries) leaves new connections working: 50 of 50 real clients connect
// while it runs. Linux marks a connection assured only when its handshake
// completes, and early drop makes room by evicting entries that are not.
func TestSYNFloodOnPublishedPort(t *testing.T) {
	needRoot(t)
	name := prefix("syn")
	in := start(t, name, writeConfig(t, synFloodConfig(name)))
	host, ep := name+"-host", name+"-f"
	// The server answers a request (not on accept): a client's ACK lost in
	// the flood is repaired by its request, as in real protocols (the
	// listener answers the flood with SYN cookies and keeps no state).
	l := listen(t, ep, "0.0.0.0:80")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				b := make([]byte, 4)
				if _, err := io.ReadFull(c, b); err == nil {
					c.Write([]byte(c.RemoteAddr().String()))
				}
			}()
		}
	}()
	pub := netip.MustParseAddrPort("10.254.96.2:8080")

	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	fl := newSynFlooder(t, host, pub)
	var sent atomic.Int64
	flooding := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(flooding)
		for i := range n {
			src := [4]byte{100, 64 + byte(i>>16&63), byte(i >> 8), byte(i)} // 100.64.0.0/10, one source each
			if fl.send(src, uint16(1024+i%60000)) == nil {
				sent.Add(1)
			}
			if i%2000 == 1999 {
				time.Sleep(time.Millisecond) // let the receivers breathe: a flood, not a stall
			}
		}
	}()

	// 50 real connections while the flood runs, each must succeed. A real
	// client retries its SYN for minutes; 30 s leaves room for a few
	// retransmissions on a loaded machine.
	hostAddr := netip.MustParseAddr("10.254.96.1")
	ok := 0
	for i := range 50 {
		var c net.Conn
		var err error
		inNetns(t, host, func() {
			d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: hostAddr.AsSlice()}}
			c, err = d.Dial("tcp4", pub.String())
		})
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		_, err = c.Write([]byte("ping"))
		require.NoError(t, err)
		m, err := c.Read(buf)
		c.Close()
		if err != nil {
			t.Errorf("connection %d: no answer: %v", i, err)
			continue
		}
		got, perr := netip.ParseAddrPort(string(buf[:m]))
		require.NoError(t, perr)
		require.Equal(t, hostAddr, got.Addr(), "the server sees the client")
		ok++
		if i%10 == 9 {
			time.Sleep(50 * time.Millisecond) // spread over the flood
		}
	}
	wg.Wait()
	require.Equal(t, 50, ok, "50 of 50 new connections while %d spoofed SYNs were sent", sent.Load())
	require.Greater(t, sent.Load(), int64(n/2))
	<-flooding

	// The table stayed within its bound and made room by early drop.
	out, err := in.cli("conntrack", "-o", "json")
	require.NoError(t, err)
	var entries []struct {
		State   string `json:"state"`
		Assured bool   `json:"assured"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &entries))
	require.LessOrEqual(t, len(entries), 4096)
	require.Greater(t, len(entries), 4000, "the flood filled the table")
	synRecv := 0
	for _, e := range entries {
		if e.State == "SYN_RECV" {
			synRecv++
			require.False(t, e.Assured, "a SYN_RECV entry is not assured")
		}
	}
	require.Greater(t, synRecv, 2000, "the listener answered the flood: SYN_RECV entries")
	metrics, err := in.cli("ports", "-o", "json")
	require.NoError(t, err)
	require.NotContains(t, metrics, "conntrack-full", "no new connection refused for a full table")
}
