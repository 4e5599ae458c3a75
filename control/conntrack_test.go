package control

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

var macHost = packet.MAC{0x02, 0xaa, 0, 0, 0, 1} // the uplink's host side

// natRules is the rule set of newNATLab, counters aside.
var natRules = []string{
	`-A PREROUTING -d 10.250.0.2/32 -p tcp --dport 8080 -j DNAT --to-destination 172.20.0.10:80 -m comment --comment "publish web 8080:80/tcp"`,
	// each network's gateway is the host (SPEC §6)
	`-A PREROUTING -d 172.20.0.1/32 -i front -p tcp --dport 8080 -j DNAT --to-destination 172.20.0.10:80 -m comment --comment "publish web 8080:80/tcp at gateway front"`,
	`-A PREROUTING -d 172.20.0.1/32 -i front -p tcp -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway front"`,
	`-A PREROUTING -d 172.20.0.1/32 -i front -p udp -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway front"`,
	`-A PREROUTING -d 172.21.0.1/32 -i back -p tcp --dport 8080 -j DNAT --to-destination 172.20.0.10:80 -m comment --comment "publish web 8080:80/tcp at gateway back"`,
	`-A PREROUTING -d 172.21.0.1/32 -i back -p tcp -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway back"`,
	`-A PREROUTING -d 172.21.0.1/32 -i back -p udp -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway back"`,
	`-A FORWARD -p udp --dport 9999 -j DROP -m comment --comment "rule line 42"`,
	`-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT -m comment --comment "established"`,
	`-A FORWARD -m conntrack --ctstate INVALID -j DROP -m comment --comment "invalid"`,
	`-A FORWARD -d 172.20.0.10/32 -o front -p tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT -m comment --comment "publish web 8080:80/tcp"`,
	`-A POSTROUTING -s 172.20.0.0/24 -d 172.20.0.10/32 -o front -p tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE -m comment --comment "hairpin web 8080:80/tcp"`,
	`-A POSTROUTING -s 172.20.0.0/24 -o uplink -j MASQUERADE -m comment --comment "masquerade front"`,
	`-A POSTROUTING -s 172.21.0.0/24 -d 10.250.0.1/32 -o uplink -m conntrack --ctstate DNAT -j MASQUERADE -m comment --comment "host gateway back"`,
}

// connect has web send a UDP datagram (33 bytes of IP) to the host side of
// the uplink, 10.250.0.1:53, and waits until the router, having made the
// connection, asks the uplink for the host's MAC. With reply, the host
// answers to the masqueraded address and the reply reaches conntrack.
func (l *lab) connect(t *testing.T, reply bool) {
	t.Helper()
	l.ports["web"].Inject(udp4(t, macWeb, gwFront, "172.20.0.10:40000", "10.250.0.1:53", "hello"))
	require.NotNil(t, l.ports["uplink"].Recv(5*time.Second), "the router ARPs for the host")
	if !reply {
		return
	}
	l.ports["uplink"].Inject(udp4(t, macHost, macUplink, "10.250.0.1:53", "10.250.0.2:40000", "world"))
	// The reply is translated back to web, whose MAC the router asks front for.
	require.NotNil(t, l.ports["web"].Recv(5*time.Second), "the router ARPs for web")
}

func TestConntrackEmpty(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	code, hdr, body := rawGet(t, c, "GET", "/v1/conntrack")
	require.Equal(t, 200, code)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	require.Equal(t, "[]\n", body, "an empty table is an empty array, not null")

	// Without an uplink there are no connections either, and still rules.
	c = serve(t, newLab(t).dp)
	_, _, body = rawGet(t, c, "GET", "/v1/conntrack?proto=tcp")
	require.Equal(t, "[]\n", body)
	var rows []rule.Listed
	require.NoError(t, c.GetJSON(context.Background(), "/v1/rules", &rows))
	require.Equal(t, []string{
		`-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT -m comment --comment "established"`,
		`-A FORWARD -m conntrack --ctstate INVALID -j DROP -m comment --comment "invalid"`,
	}, ruleStrings(rows))
}

func TestConntrackConnection(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	ctx := context.Background()
	l.connect(t, false)

	var raw []map[string]any
	require.NoError(t, c.GetJSON(ctx, "/v1/conntrack", &raw))
	require.Equal(t, []map[string]any{{
		"family":   "ipv4",
		"proto":    "udp",
		"original": map[string]any{"src": "172.20.0.10", "dst": "10.250.0.1", "sport": 40000.0, "dport": 53.0},
		"reply":    map[string]any{"src": "10.250.0.1", "dst": "10.250.0.2", "sport": 53.0, "dport": 40000.0},
		"snat":     true,
		"dnat":     false,
		"replied":  false,
		"assured":  false,
		"timeout":  "30s",
		"packets":  []any{1.0, 0.0},
		"bytes":    []any{33.0, 0.0},
	}}, raw, "UDP has no state; the fake clock has not moved, so the whole UDP timeout is left")

	// The host answers: the connection is assured, with the reply counted
	// and UDP's stream timeout.
	l.ports["uplink"].Inject(udp4(t, macHost, macUplink, "10.250.0.1:53", "10.250.0.2:40000", "world"))
	var entries []nat.Entry
	require.Eventually(t, func() bool {
		require.NoError(t, c.GetJSON(ctx, "/v1/conntrack", &entries))
		return len(entries) == 1 && entries[0].Assured
	}, 5*time.Second, time.Millisecond)
	e := entries[0]
	require.Equal(t, [2]uint64{1, 1}, e.Packets)
	require.Equal(t, [2]uint64{33, 33}, e.Bytes)
	require.Equal(t, 2*time.Minute, time.Duration(e.Timeout))
	require.True(t, e.SNAT)
	require.Equal(t, "10.250.0.2", e.Reply.Dst.String())

	for _, tc := range []struct {
		query string
		n     int
	}{{"", 1}, {"?proto=udp", 1}, {"?proto=tcp", 0}, {"?proto=icmp", 0},
		{"?src=172.20.0.10", 1}, {"?src=172.20.0.11", 0}, {"?dst=10.250.0.1&dport=53", 1}, {"?sport=40000", 1},
		{"?dport=80", 0}, {"?state=ESTABLISHED", 0}, {"?proto=icmpv6", 0}, {"?src=fd00:20::10", 0}, {"?src=::ffff:172.20.0.10", 1}, {"?family=ipv4", 1}, {"?family=ipv6", 0}} {
		var got []nat.Entry
		require.NoError(t, c.GetJSON(ctx, "/v1/conntrack"+tc.query, &got))
		require.Len(t, got, tc.n, tc.query)
	}
}

func TestRules(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	ctx := context.Background()

	var rows []rule.Listed
	require.NoError(t, c.GetJSON(ctx, "/v1/rules", &rows))
	require.Equal(t, natRules, ruleStrings(rows))
	for _, r := range rows {
		require.Zero(t, r.Packets, r.Comment)
	}
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 1, 2, 3}, positions(rows))

	var raw []map[string]any
	require.NoError(t, c.GetJSON(ctx, "/v1/rules", &raw))
	require.Equal(t, map[string]any{"hook": "forward", "position": 1.0, "packets": 0.0, "bytes": 0.0, "action": "drop",
		"match": map[string]any{"proto": "udp", "dport": []any{9999.0, 9999.0}}, "comment": "rule line 42", "line": 42.0, "family": "any"}, raw[7])
	require.NotContains(t, raw[8], "line", "built-ins have no config line")
	require.Equal(t, map[string]any{"hook": "prerouting", "position": 1.0, "packets": 0.0, "bytes": 0.0, "action": "dnat",
		"match":   map[string]any{"dst": "10.250.0.2/32", "proto": "tcp", "dport": []any{8080.0, 8080.0}},
		"to_addr": "172.20.0.10", "to_port": 80.0, "comment": "publish web 8080:80/tcp", "family": "ipv4"}, raw[0])

	// The request is masqueraded; its reply is accepted as established.
	l.connect(t, true)
	require.NoError(t, c.GetJSON(ctx, "/v1/rules", &rows))
	require.Equal(t, natRules, ruleStrings(rows))
	for i, r := range rows {
		want := uint64(0)
		if i == 8 || i == 12 { // established, masquerade front
			want = 1
		}
		require.Equal(t, want, r.Packets, r.Comment)
		require.Equal(t, 33*want, r.Bytes, r.Comment)
	}
}

func TestConntrackMetrics(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	l.connect(t, true)

	body, err := c.Stream(context.Background(), "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(body)
	body.Close()
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	for _, want := range []string{
		"# TYPE uswitch_conntrack_entries gauge",
		"uswitch_conntrack_entries 1",
		"# TYPE uswitch_conntrack_inserted_total counter",
		"uswitch_conntrack_inserted_total 1",
		"uswitch_conntrack_early_drop_total 0",
		"uswitch_conntrack_drop_total 0",
		"uswitch_conntrack_expired_total 0",
		"uswitch_conntrack_insert_failed_total 0",
		"uswitch_conntrack_reopened_total 0",
		"uswitch_frag_reassembled_total 0",
		"uswitch_frag_expired_total 0",
		"# TYPE uswitch_rule_packets_total counter",
		`uswitch_rule_packets_total{hook="prerouting",rule="1: publish web 8080:80/tcp"} 0`,
		`uswitch_rule_packets_total{hook="forward",rule="1: rule line 42"} 0`,
		`uswitch_rule_packets_total{hook="forward",rule="2: established"} 1`,
		`uswitch_rule_bytes_total{hook="forward",rule="2: established"} 33`,
		`uswitch_rule_packets_total{hook="forward",rule="3: invalid"} 0`,
		`uswitch_rule_packets_total{hook="forward",rule="4: publish web 8080:80/tcp"} 0`,
		`uswitch_rule_packets_total{hook="postrouting",rule="1: hairpin web 8080:80/tcp"} 0`,
		`uswitch_rule_packets_total{hook="postrouting",rule="2: masquerade front"} 1`,
		`uswitch_rule_bytes_total{hook="postrouting",rule="2: masquerade front"} 33`,
	} {
		require.True(t, slices.Contains(lines, want), "/metrics lacks the line %q", want)
	}
}

func TestConntrackErrors(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	for _, tc := range []struct {
		method, path string
		code         int
		msg          string
	}{
		{"GET", "/v1/conntrack?proto=sctp", 400, `query parameter proto="sctp": want tcp, udp, icmp or icmpv6`},
		{"GET", "/v1/conntrack?proto=", 400, `query parameter proto="": want tcp, udp, icmp or icmpv6`},
		{"GET", "/v1/conntrack?proto=tcp&proto=udp", 400, `query parameter "proto" given 2 times`},
		{"GET", "/v1/conntrack?network=front", 400, `unknown query parameter "network" (/v1/conntrack takes family, proto, src, dst, sport, dport, state)`},
		{"GET", "/v1/conntrack?family=inet6", 400, `query parameter family="inet6": want ipv4 or ipv6`},
		{"GET", "/v1/conntrack?src=front", 400, `query parameter src="front": not an IPv4 or IPv6 address`},
		{"GET", "/v1/conntrack?dst=fe80::1%25eth0", 400, `query parameter dst="fe80::1%eth0": not an IPv4 or IPv6 address`},
		{"GET", "/v1/conntrack?dport=0", 400, `query parameter dport="0": not a port (1-65535)`},
		{"GET", "/v1/conntrack?sport=70000", 400, `query parameter sport="70000": not a port (1-65535)`},
		{"GET", "/v1/conntrack?state=open", 400, `query parameter state="open": want a TCP state (NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2)`},
		{"POST", "/v1/conntrack", 405, "method POST not allowed on /v1/conntrack (use GET)"},
		{"GET", "/v1/rules?hook=forward", 400, `unknown query parameter "hook": /v1/rules takes none`},
		{"DELETE", "/v1/rules", 405, "method DELETE not allowed on /v1/rules (use GET)"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, _, body := rawGet(t, c, tc.method, tc.path)
			require.Equal(t, tc.code, code)
			var eb errorBody
			require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
			require.Equal(t, tc.msg, eb.Error)
		})
	}
}

// Listings beyond maxListings at once are answered 429, and a listing
// frees its place when it ends.
func TestConntrackListingsBounded(t *testing.T) {
	l := newNATLab(t)
	h := NewHandler(l.dp).(*handler)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for range cap(h.listings) {
		h.listings <- struct{}{} // listings under way
	}
	resp, err := http.Get(srv.URL + "/v1/conntrack")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	<-h.listings
	resp, err = http.Get(srv.URL + "/v1/conntrack")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, h.listings, cap(h.listings)-1, "the listing gave its place back")
}

// ruleStrings is rows as iptables-save lines.
func ruleStrings(rows []rule.Listed) []string {
	out := make([]string, len(rows))
	for i := range rows {
		out[i] = rows[i].String()
	}
	return out
}

// positions are the rows' positions in their chains.
func positions(rows []rule.Listed) []int {
	out := make([]int, len(rows))
	for i := range rows {
		out[i] = rows[i].Position
	}
	return out
}
