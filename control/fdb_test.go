package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

// switchesOnly is a Backend of networks only: enough for /v1/fdb.
type switchesOnly struct {
	Backend // nil: the other calls are not made
	nets    []*vswitch.Switch
}

func (b switchesOnly) Networks() []*vswitch.Switch { return b.nets }

type discard struct{}

func (discard) WriteFrame([]byte, packet.Offload) error { return nil }

// stationMAC is the i-th of many distinct, unicast, locally administered MACs.
func stationMAC(i int) packet.MAC {
	return packet.MAC{0x06, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// bigSwitch learns n MACs the way traffic teaches them (a broadcast frame
// from each through Input): stationMAC(i) on port b when i%5 == 0, else on
// port a. Port c stays silent.
func bigSwitch(t testing.TB, n int) *vswitch.Switch {
	sw := vswitch.New(vswitch.Config{Name: "big", Clock: &clock.Fake{}})
	var ports []*vswitch.Port
	for _, name := range []string{"a", "b", "c"} {
		p, err := sw.AddPort(vswitch.PortConfig{Name: name}, discard{})
		require.NoError(t, err)
		ports = append(ports, p)
	}
	f := make([]byte, 60)
	eth := packet.Ethernet(f)
	eth.SetDst(packet.Broadcast)
	f[12], f[13] = 0x08, 0x00 // IPv4 (the payload is not looked at)
	for i := range n {
		eth.SetSrc(stationMAC(i))
		p := ports[0]
		if i%5 == 0 {
			p = ports[1]
		}
		sw.Input(p, f, packet.Offload{})
	}
	require.Equal(t, n, sw.Len())
	return sw
}

// heapWriter is a ResponseWriter that counts the body and samples the
// live heap every so many writes.
type heapWriter struct {
	h          http.Header
	code       int
	n, writes  int
	base, peak uint64
	first      []byte // the start of the body
}

func (w *heapWriter) Header() http.Header { return w.h }
func (w *heapWriter) WriteHeader(c int)   { w.code = c }
func (w *heapWriter) Write(p []byte) (int, error) {
	if len(w.first) < 4096 {
		w.first = append(w.first, p[:min(len(p), 4096-len(w.first))]...)
	}
	w.n += len(p)
	if w.writes++; w.writes%256 == 0 { // what is live, garbage aside
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		w.peak = max(w.peak, m.HeapAlloc)
	}
	return len(p), nil
}

// Listing an FDB of a million stations streams it: the answer (over 100
// MB of JSON) is written while the live heap grows by a chunk's worth, not
// by a million rows, and it is done within a bound that holds on a loaded
// machine under the race detector.
func TestFDBListingMillion(t *testing.T) {
	const n = 1_000_000
	sw := bigSwitch(t, n)
	h := NewHandler(switchesOnly{nets: []*vswitch.Switch{sw}})

	w := &heapWriter{h: http.Header{}}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	w.base, w.peak = m.HeapAlloc, m.HeapAlloc
	start := time.Now()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/fdb", nil))
	took := time.Since(start)
	require.Equal(t, http.StatusOK, w.code)
	t.Logf("%d entries, %d MB of JSON in %v, live heap grew by %d KB at most", n, w.n>>20, took, (w.peak-w.base)>>10)
	require.Greater(t, w.n, 100<<20, "the listing is large")
	require.Less(t, w.peak-w.base, uint64(4<<20), "the heap does not grow with the listing")
	require.Less(t, took, 2*time.Minute)
	require.Contains(t, string(w.first), `"network": "big"`)

	// The filters answer the rows they select, and only those.
	get := func(q string) []FDBEntry {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/fdb?"+q, nil))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var out []FDBEntry
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		return out
	}
	one := get("mac=" + stationMAC(12346).String())
	require.Equal(t, []FDBEntry{{Network: "big", MAC: stationMAC(12346), Port: "a"}}, one)
	require.Equal(t, one, get("network=big&port=a&mac="+stationMAC(12346).String()))
	require.Empty(t, get("port=b&mac="+stationMAC(12346).String()), "not on b")
	require.Empty(t, get("port=c"), "c learned nothing")

	onB := get("port=b")
	require.Len(t, onB, n/5)
	seen := map[packet.MAC]bool{}
	for _, e := range onB {
		require.Equal(t, "b", e.Port)
		seen[e.MAC] = true
	}
	require.Len(t, seen, n/5, "each once")
	for i := 0; i < n; i += 5 {
		require.True(t, seen[stationMAC(i)], "station %d", i)
	}
}

// Filters on small tables, and their errors.
func TestFDBFilters(t *testing.T) {
	sw := bigSwitch(t, 20)
	h := NewHandler(switchesOnly{nets: []*vswitch.Switch{sw}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/fdb?port=b", nil))
	var out []FDBEntry
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Equal(t, []FDBEntry{
		{Network: "big", MAC: stationMAC(0), Port: "b"},
		{Network: "big", MAC: stationMAC(5), Port: "b"},
		{Network: "big", MAC: stationMAC(10), Port: "b"},
		{Network: "big", MAC: stationMAC(15), Port: "b"},
	}, out, "a small table is listed sorted")

	for _, c := range []struct {
		q    string
		code int
		msg  string
	}{
		{"port=nope", 404, `no port "nope"`},
		{"mac=zz", 400, `query parameter mac="zz": not a MAC address`},
		{"mac=00:00:00:00:00:00", 400, `query parameter mac="00:00:00:00:00:00": not a MAC address`},
		{"port=a&watch=1", 400, "query parameters port and mac do not apply to watch=1"},
		{"port=a&port=b", 400, `query parameter "port" given 2 times`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/fdb?"+c.q, nil))
		require.Equal(t, c.code, rec.Code, c.q)
		var eb errorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &eb), c.q)
		require.Equal(t, c.msg, eb.Error, c.q)
	}
}

// FDB listings share conntrack's bound: beyond maxListings at once, 429.
func TestFDBListingsBounded(t *testing.T) {
	h := NewHandler(switchesOnly{nets: []*vswitch.Switch{bigSwitch(t, 3)}}).(*handler)
	for range cap(h.listings) {
		h.listings <- struct{}{}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/fdb", nil))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	<-h.listings
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/fdb", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Len(t, h.listings, cap(h.listings)-1, "the listing gave its place back")
}

// An FDB row written without reflection is the bytes json.MarshalIndent
// writes for it, whatever its names hold.
func TestFDBEntryAppendJSON(t *testing.T) {
	for _, e := range []FDBEntry{
		{},
		{Network: "front", MAC: packet.MAC{0x02, 0x42, 0xac, 0x1f, 0x01, 0x03}, Port: "docs-api", Age: clock.Duration(29 * time.Millisecond)},
		{Network: "back", MAC: packet.MAC{0xff, 0xee, 0xdd, 0x0c, 0xb0, 0xa9}, VLAN: 4095, Port: "gw/back", Static: true, Age: clock.Duration(9362 * time.Millisecond)},
		{Network: `q"u\o<t>e&`, MAC: stationMAC(1 << 30), Port: "tab\there\nnew é ✓ \x7f", Age: clock.Duration(-1500 * time.Millisecond)},
		{Network: "n", Port: "p", Age: clock.Duration(300 * time.Second)},
	} {
		want, err := json.MarshalIndent(e, "  ", "  ")
		require.NoError(t, err)
		require.Equal(t, string(want), string(e.appendJSON([]byte("x"))[1:]))
	}
}
