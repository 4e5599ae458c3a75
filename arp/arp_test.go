package arp

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
)

type recorder struct {
	arps        []*layers.ARP
	arpDst      []packet.MAC
	released    [][]byte
	releasedOff []packet.Offload
	releasedTo  []packet.MAC
	unreachable [][]byte
}

func (r *recorder) WriteFrame(f []byte, _ packet.Offload) error {
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	r.arps = append(r.arps, p.Layer(layers.LayerTypeARP).(*layers.ARP))
	r.arpDst = append(r.arpDst, packet.Ethernet(f).Dst())
	return nil
}
func (r *recorder) Release(f []byte, off packet.Offload, m packet.MAC) {
	r.released = append(r.released, f)
	r.releasedOff = append(r.releasedOff, off)
	r.releasedTo = append(r.releasedTo, m)
}
func (r *recorder) Unreachable(f []byte, _ packet.Offload) { r.unreachable = append(r.unreachable, f) }

// link is what a cache sends to r.
func (r *recorder) link() neigh.Link {
	return neigh.Link{Wire: r, Release: r.Release, Unreachable: r.Unreachable}
}

var (
	gwMAC  = packet.MAC{0x02, 0x42, 10, 0, 0, 1}
	gwIP   = [4]byte{10, 0, 0, 1}
	hostM  = packet.MAC{0x02, 0x42, 10, 0, 0, 5}
	hostIP = [4]byte{10, 0, 0, 5}
)

func newCache() (*Cache, *recorder, *clock.Fake) {
	r := &recorder{}
	clk := &clock.Fake{}
	clk.Advance(time.Hour) // so "time zero" never means "never"
	return New(Config{}, gwMAC, gwIP, clk, r.link()), r, clk
}

// arpFrame builds an ARP packet with gopacket and returns its ARP view.
func arpFrame(t *testing.T, op uint16, smac packet.MAC, sip [4]byte, tmac packet.MAC, tip [4]byte) packet.ARP {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(smac[:]), DstMAC: net.HardwareAddr(packet.Broadcast[:]), EthernetType: layers.EthernetTypeARP}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: smac[:], SourceProtAddress: sip[:], DstHwAddress: tmac[:], DstProtAddress: tip[:]}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, a))
	return packet.ARP(buf.Bytes()[packet.EthernetHeaderLen:])
}

func TestAnswersRequestForOwnAddressAndLearnsSender(t *testing.T) {
	c, r, _ := newCache()
	c.Input(arpFrame(t, packet.ARPRequest, hostM, hostIP, packet.MAC{}, gwIP))
	require.Len(t, r.arps, 1)
	rep := r.arps[0]
	require.EqualValues(t, layers.ARPReply, rep.Operation)
	require.Equal(t, gwMAC[:], []byte(rep.SourceHwAddress))
	require.Equal(t, gwIP[:], []byte(rep.SourceProtAddress))
	require.Equal(t, hostM[:], []byte(rep.DstHwAddress))
	require.Equal(t, hostIP[:], []byte(rep.DstProtAddress))
	require.Equal(t, hostM, r.arpDst[0], "replies are unicast")
	m, ok := c.Lookup(hostIP)
	require.True(t, ok)
	require.Equal(t, hostM, m)
}

func TestIgnoresRequestsForOtherAddresses(t *testing.T) {
	c, r, _ := newCache()
	c.Input(arpFrame(t, packet.ARPRequest, hostM, hostIP, packet.MAC{}, [4]byte{10, 0, 0, 9}))
	require.Empty(t, r.arps)
	_, ok := c.Lookup(hostIP)
	require.False(t, ok, "a request to someone else creates no entry")
}

func TestAddressProbeAnsweredNotLearned(t *testing.T) {
	c, r, _ := newCache()
	c.Input(arpFrame(t, packet.ARPRequest, hostM, [4]byte{}, packet.MAC{}, gwIP))
	require.Len(t, r.arps, 1)
	require.Empty(t, c.Entries())
}

func TestResolveQueuesThenReleasesOnReply(t *testing.T) {
	c, r, _ := newCache()
	gso := packet.Offload{Flags: packet.VnetNeedsCsum, GSOType: packet.GSOTCPv4, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	c.Resolve(hostIP, []byte("pkt1"), packet.Offload{})
	c.Resolve(hostIP, []byte("pkt2"), gso)
	require.Len(t, r.arps, 1, "one request for two queued packets")
	req := r.arps[0]
	require.EqualValues(t, layers.ARPRequest, req.Operation)
	require.Equal(t, hostIP[:], []byte(req.DstProtAddress))
	require.Equal(t, packet.Broadcast, r.arpDst[0])
	e := c.Entries()
	require.Equal(t, Incomplete, e[0].State)
	require.Equal(t, 2, e[0].Queue)

	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Equal(t, [][]byte{[]byte("pkt1"), []byte("pkt2")}, r.released)
	require.Equal(t, []packet.Offload{{}, gso}, r.releasedOff, "a queued super-frame keeps its offloads")
	require.Equal(t, []packet.MAC{hostM, hostM}, r.releasedTo)
	require.Equal(t, Reachable, c.Entries()[0].State)
}

// Linux queues up to unres_qlen (101) packets per unresolved neighbour, and
// at most unres_qlen_bytes (212992) of them: a burst of 10 is delivered
// whole, beyond the bounds the oldest go.
func TestQueueIsBounded(t *testing.T) {
	c, r, _ := newCache()
	for i := range 10 {
		c.Resolve(hostIP, []byte{byte(i)}, packet.Offload{})
	}
	require.Zero(t, c.QueueDrops.Load())
	require.Equal(t, 10, c.Entries()[0].Queue)
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Len(t, r.released, 10, "a burst of 10 arrives whole")

	// in packets: 101
	c, r, _ = newCache()
	for i := range 150 {
		c.Resolve(hostIP, []byte{byte(i)}, packet.Offload{})
	}
	require.EqualValues(t, 49, c.QueueDrops.Load())
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Len(t, r.released, 101)
	require.Equal(t, []byte{49}, r.released[0], "the newest packets are kept")
	require.Equal(t, []byte{149}, r.released[100])

	// in bytes: 212992, so 14 frames of 15000 bytes (210000) and not 15
	c, r, _ = newCache()
	for i := range 20 {
		f := make([]byte, 15000)
		f[0] = byte(i)
		c.Resolve(hostIP, f, packet.Offload{})
	}
	require.EqualValues(t, 6, c.QueueDrops.Load())
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Len(t, r.released, 14)
	require.Equal(t, byte(6), r.released[0][0])
}

func TestResolutionFailsAfterProbes(t *testing.T) {
	c, r, clk := newCache()
	c.Resolve(hostIP, []byte("lost"), packet.Offload{})
	for range 3 {
		clk.Advance(time.Second)
		c.Tick()
	}
	require.Len(t, r.arps, 3, "three broadcast requests, a second apart")
	require.Equal(t, [][]byte{[]byte("lost")}, r.unreachable)
	require.Equal(t, Failed, c.Entries()[0].State)
	_, ok := c.Lookup(hostIP)
	require.False(t, ok)

	// a new packet restarts resolution
	c.Resolve(hostIP, []byte("again"), packet.Offload{})
	require.Len(t, r.arps, 4)
	// failed entries are forgotten after FailedTTL
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Equal(t, Reachable, c.Entries()[0].State)
}

func TestFailedEntryForgotten(t *testing.T) {
	c, _, clk := newCache()
	c.Resolve(hostIP, []byte("x"), packet.Offload{})
	for range 3 {
		clk.Advance(time.Second)
		c.Tick()
	}
	clk.Advance(21 * time.Second)
	c.Tick()
	require.Empty(t, c.Entries())
}

func TestReachableBecomesStaleAndIsReprobed(t *testing.T) {
	c, r, clk := newCache()
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP)) // unsolicited reply to us: learned
	clk.Advance(31 * time.Second)
	m, ok := c.Lookup(hostIP)
	require.True(t, ok, "a stale entry is still used")
	require.Equal(t, hostM, m)
	require.Equal(t, Stale, c.Entries()[0].State)
	n := len(r.arps)
	_, _ = c.Lookup(hostIP)
	require.Len(t, r.arps, n+1, "use of a stale entry sends a unicast probe")
	require.Equal(t, hostM, r.arpDst[len(r.arpDst)-1])
	_, _ = c.Lookup(hostIP)
	require.Len(t, r.arps, n+1, "probes are a retrans time apart")

	// the probe is answered: reachable again
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Equal(t, Reachable, c.Entries()[0].State)
}

func TestStaleUnansweredFails(t *testing.T) {
	c, _, clk := newCache()
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	clk.Advance(31 * time.Second)
	for range 4 {
		c.Lookup(hostIP)
		clk.Advance(time.Second)
		c.Tick()
	}
	_, ok := c.Lookup(hostIP)
	require.False(t, ok)
}

func TestUnusedStaleEntryForgotten(t *testing.T) {
	c, _, clk := newCache()
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	clk.Advance(91 * time.Second)
	c.Tick()
	require.Empty(t, c.Entries())
}

func TestGratuitousARPUpdatesExistingOnly(t *testing.T) {
	c, _, _ := newCache()
	other := packet.MAC{0x02, 0, 0, 0, 0, 0x77}
	c.Input(arpFrame(t, packet.ARPRequest, other, [4]byte{10, 0, 0, 6}, packet.MAC{}, [4]byte{10, 0, 0, 6}))
	require.Empty(t, c.Entries(), "gratuitous ARP creates nothing")

	c.Input(arpFrame(t, packet.ARPRequest, hostM, hostIP, packet.MAC{}, gwIP))
	c.Input(arpFrame(t, packet.ARPRequest, other, hostIP, packet.MAC{}, hostIP)) // host moved to a new MAC
	m, _ := c.Lookup(hostIP)
	require.Equal(t, other, m)
}

func TestTableIsBounded(t *testing.T) {
	r := &recorder{}
	c := New(Config{MaxEntries: 4}, gwMAC, gwIP, &clock.Fake{}, r.link())
	for i := range 10 {
		c.Resolve([4]byte{10, 0, 1, byte(i)}, []byte{1}, packet.Offload{})
	}
	require.Len(t, c.Entries(), 4)
	require.EqualValues(t, 6, c.TableFull.Load())
}

func TestLookupDoesNotAllocate(t *testing.T) {
	c, _, _ := newCache()
	c.Input(arpFrame(t, packet.ARPReply, hostM, hostIP, gwMAC, gwIP))
	require.Zero(t, testing.AllocsPerRun(1000, func() { c.Lookup(hostIP) }))
}
