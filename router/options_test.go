package router

import (
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

func withOptions(o ...layers.IPv4Option) ipOpt {
	return func(ip *layers.IPv4) { ip.Options = o }
}

// Like Linux with accept_source_route=0 (its default for forwarding),
// source-routed packets are dropped, and so are options whose lengths do
// not parse; other options are forwarded as they are.
func TestIPOptions(t *testing.T) {
	route := []byte{4, 10, 0, 0, 1, 10, 0, 0, 2} // pointer, two addresses
	for _, tc := range []struct {
		name   string
		opts   []layers.IPv4Option
		edit   func(h []byte) // on the header's option bytes, after serializing
		reason stats.Reason
		pass   bool
	}{
		{name: "record route", opts: []layers.IPv4Option{{OptionType: optRR, OptionLength: 11, OptionData: route}}, pass: true},
		{name: "nop and end", opts: []layers.IPv4Option{{OptionType: optNOP}, {OptionType: optEnd}}, pass: true},
		{name: "loose source route", opts: []layers.IPv4Option{{OptionType: optLSRR, OptionLength: 11, OptionData: route}}, reason: stats.SourceRoute},
		{name: "strict source route", opts: []layers.IPv4Option{{OptionType: optSSRR, OptionLength: 11, OptionData: route}}, reason: stats.SourceRoute},
		{name: "length beyond the header", opts: []layers.IPv4Option{{OptionType: optRR, OptionLength: 11, OptionData: route}},
			edit: func(o []byte) { o[1] = 40 }, reason: stats.BadIPOptions},
		{name: "length 0", opts: []layers.IPv4Option{{OptionType: optRR, OptionLength: 11, OptionData: route}},
			edit: func(o []byte) { o[1] = 0 }, reason: stats.BadIPOptions},
		{name: "length byte missing", opts: []layers.IPv4Option{{OptionType: optNOP}, {OptionType: optNOP}, {OptionType: optNOP}, {OptionType: optNOP}},
			edit: func(o []byte) { o[3] = optRR }, reason: stats.BadIPOptions},
		{name: "route pointer too small", opts: []layers.IPv4Option{{OptionType: optRR, OptionLength: 11, OptionData: route}},
			edit: func(o []byte) { o[2] = 3 }, reason: stats.BadIPOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, false, 1500)
			g.learn(t, "gw/back", dbIP, dbMAC)
			f := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10, withOptions(tc.opts...))
			ip := packet.IPv4(f[packet.EthernetHeaderLen:])
			require.Greater(t, ip.HeaderLen(), 20)
			if tc.edit != nil {
				tc.edit(ip[20:ip.HeaderLen()])
				ip.SetHeaderChecksum()
			}
			g.ports["gw/front"].Input(f, packet.Offload{})
			out := g.links["gw/back"].take()
			if tc.pass {
				require.Len(t, out, 1)
				requireChecksumsValid(t, out[0])
				require.Empty(t, g.stats["gw/front"].Snapshot().Drops)
				return
			}
			require.Empty(t, out)
			require.Empty(t, g.links["gw/front"].take(), "dropped silently")
			require.EqualValues(t, 1, g.stats["gw/front"].Dropped(tc.reason))
		})
	}
}
