#!/usr/bin/env bash
# Where 64-byte UDP datagrams are lost when the sender outruns uswitch: one
# instance with two endpoints on one network (LINK=tap, the default, or
# veth), iperf3 -u -l 64 -b 0 for SECS seconds (default 3) from a to b,
# and the counters along the path read before and after:
#
#   sender      iperf3's datagrams sent; a's eth0 TX packets and TX dropped
#               (a TAP drops when its ring towards uswitch is full: tun
#               does not stop its queue, so neither the qdisc nor the
#               socket ever holds the sender back) and its qdisc's drops;
#   uswitch     a's port RX, b's port TX and every drop reason (`uswitch
#               ports`); for veth, what a's eth0 sent that uswitch did not
#               read was lost between the veth and the packet socket;
#   receiver    b's eth0 RX packets and dropped, the namespace's UDP
#               InDatagrams and RcvbufErrors (the receiving socket full),
#               and what iperf3 counted delivered;
#   machine     softnet backlog drops (/proc/net/softnet_stat, all CPUs).
#
# Prints a markdown table: each stage's count and its share of what the
# sender offered. Needs root, iperf3 and python3 (installed with apt-get
# when missing); BIN (default bin/uswitch, built when missing), and any
# further arguments go to `uswitch run` (e.g. --busy-poll=false).
# Everything is named ul<pid>*, lives in namespaces it creates, and is
# removed on exit, whichever way the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/udploss.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "$ME needs root (namespaces)"; exit 1; }
need_tools iperf3:iperf3 python3:python3
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
SECS=${SECS:-3}
LINK=${LINK:-tap}
case $LINK in tap | veth) ;; *) log "LINK is tap or veth"; exit 1 ;; esac
P=ul$(($$ % 10000))
work=$(mktemp -d)
PID=""
cleanup() {
	set +e
	trap '' INT TERM
	[ -f "$work/iperf.pid" ] && kill_iperf_server "$work/iperf.pid"
	usw_stop
	rm -rf "$work"
}
on_exit

usw_lan 10.68.0.0/24 "$LINK" "$@"

# snap FILE: the counters, as JSON.
snap() {
	{
		echo '{"a": '
		ip -j -s -n "$P-a" link show eth0
		echo ', "b": '
		ip -j -s -n "$P-b" link show eth0
		echo ', "qdisc": '
		ip netns exec "$P-a" tc -j -s qdisc show dev eth0
		echo ', "snmp": '
		ip netns exec "$P-b" cat /proc/net/snmp | python3 -c '
import json, sys
rows = [l.split() for l in sys.stdin if l.startswith("Udp:")]
print(json.dumps(dict(zip(rows[0][1:], map(int, rows[1][1:])))))'
		echo ', "softnet": '
		python3 -c '
import json
print(json.dumps(sum(int(l.split()[1], 16) for l in open("/proc/net/softnet_stat"))))'
		echo ', "ports": '
		"$BIN" ports --control "$work/s.sock" -o json
		echo '}'
	} >"$1"
}
snap "$work/before.json"
ip netns exec "$P-b" iperf3 -s -1 -D -p 5399 -I "$work/iperf.pid" >/dev/null
for i in $(seq 50); do
	ip netns exec "$P-b" ss -Hlnu "sport = :5399" 2>/dev/null | grep -q . && break
	ip netns exec "$P-b" ss -Htln "sport = :5399" 2>/dev/null | grep -q . && break
	sleep 0.1
done
timeout --foreground -k 5 $((SECS + 30)) ip netns exec "$P-a" \
	iperf3 -c 10.68.0.3 -p 5399 -u -l 64 -b 0 -t "$SECS" --connect-timeout 3000 -J >"$work/iperf.json"
snap "$work/after.json"
python3 - "$work" "$LINK" "$SECS" "$P" <<'PY'
import json, sys
work, link, secs, p = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
b, a = json.load(open(work + "/before.json")), json.load(open(work + "/after.json"))
it = json.load(open(work + "/iperf.json"))["end"]
def dev(s, side, d, k): return s[side][0]["stats64"][d][k]
def d_dev(side, d, k): return dev(a, side, d, k) - dev(b, side, d, k)
def port(s, name): return next(x for x in s["ports"] if x["name"] == name)
def d_port(name, k): return port(a, name)[k] - port(b, name)[k]
def d_drops(name):
    before = port(b, name).get("drops") or {}
    return {r: n - before.get(r, 0) for r, n in (port(a, name).get("drops") or {}).items() if n - before.get(r, 0)}
qd = lambda s: sum(q.get("drops", 0) for q in s["qdisc"])
offered = it["sum"]["packets"]
recv = it["sum_received"]
delivered = recv["packets"] - recv["lost_packets"]
rows = [
    ("sender: datagrams iperf3 sent", offered),
    ("sender eth0: TX packets", d_dev("a", "tx", "packets")),
    ("sender eth0: TX dropped (TAP ring to uswitch full)", d_dev("a", "tx", "dropped")),
    ("sender qdisc: dropped", qd(a) - qd(b)),
    ("uswitch: read from a's port", d_port(p + "-a", "rx_packets")),
]
if link == "veth":
    rows.append(("lost between the veth and uswitch's packet socket", d_dev("a", "tx", "packets") - d_port(p + "-a", "rx_packets")))
drops = {}
for n in (p + "-a", p + "-b"):
    for r, c in d_drops(n).items():
        drops[r] = drops.get(r, 0) + c
rows += [
    ("uswitch: dropped (" + (", ".join(f"{r} {c}" for r, c in drops.items()) or "none") + ")", sum(drops.values())),
    ("uswitch: written to b's port", d_port(p + "-b", "tx_packets")),
    ("receiver eth0: RX packets", d_dev("b", "rx", "packets")),
    ("receiver eth0: RX dropped", d_dev("b", "rx", "dropped")),
    ("receiver UDP: RcvbufErrors (socket full)", a["snmp"]["RcvbufErrors"] - b["snmp"]["RcvbufErrors"]),
    ("receiver UDP: InDatagrams", a["snmp"]["InDatagrams"] - b["snmp"]["InDatagrams"]),
    ("softnet backlog drops (machine)", a["softnet"] - b["softnet"]),
    ("delivered (iperf3 receiver)", delivered),
]
print(f"| {link}, {secs:g} s | datagrams | of offered |")
print("|---|---:|---:|")
for name, n in rows:
    print(f"| {name} | {n} | {100 * n / offered:.1f}% |")
print(f"\noffered {offered / secs / 1e3:.1f} kpps, delivered {delivered / secs / 1e3:.1f} kpps")
PY
