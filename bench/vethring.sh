#!/usr/bin/env bash
# Paired, alternating runs of uswitch's veth ports read through a receive
# ring (--veth-ring=true) and with one recvmsg per frame (--veth-ring=false),
# or any two sets of `uswitch run` flags (A and B): one instance with two
# veth endpoints on one network, restarted for every run. Each run measures
#
#   tcp    iperf3 TCP, 1 stream, SECS seconds (default 5), a to b: Gbit/s and
#          uswitch's CPU seconds (utime+stime of its process) per Gbit;
#   udp    iperf3 UDP 64-byte datagrams, -b 0, SECS seconds: offered and
#          delivered kpps, what a's port read (the rest of what a's eth0
#          sent was lost between the veth and uswitch) and uswitch's CPU
#          µs per frame it read;
#   ping   ping -A -c 2000 a to b: average and mdev round trip in µs;
#   idle   uswitch's CPU seconds over 3 s without traffic;
#   rss    uswitch's resident memory (VmRSS) after the runs, in KiB.
#
# PAIRS (default 3) pairs, A then B then A ... Prints one line per run.
# Needs root, iperf3, ping and python3. Everything is named vr<pid>*, lives
# in namespaces it creates, and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/vethring.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "$ME needs root (namespaces)"; exit 1; }
need_tools iperf3:iperf3 python3:python3 ping:iputils-ping
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
SECS=${SECS:-5}
PAIRS=${PAIRS:-3}
A=${A:---veth-ring=true}
B=${B:---veth-ring=false}
ONLY=${ONLY:-tcp udp ping idle}
P=vr$(($$ % 10000))
work=$(mktemp -d)
PID=""
cleanup() {
	local rc=$?
	set +e
	trap '' INT TERM
	[ "$rc" != 0 ] && [ -f "$work/err" ] && { log "uswitch's log:"; tail -20 "$work/err" >&2; cp "$work/err" /tmp/vethring-failed.log; }
	[ -f "$work/iperf.pid" ] && kill_iperf_server "$work/iperf.pid"
	usw_stop
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$work/cfg.toml" <<TOML
name = "$P"
[defaults]
offload = true
[[network]]
name = "lan"
subnet = "10.69.0.0/24"
[[endpoint]]
name = "$P-a"
network = "lan"
link = "veth"
[[endpoint]]
name = "$P-b"
network = "lan"
link = "veth"
TOML

cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
tck=$(getconf CLK_TCK)
server() {
	local i
	rm -f "$work/iperf.pid"
	ip netns exec "$P-b" iperf3 -s -1 -D -p 5400 -I "$work/iperf.pid" >/dev/null
	for i in $(seq 50); do
		ip netns exec "$P-b" ss -Htln "sport = :5400" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
}
client() {
	timeout --foreground -k 5 $((SECS + 30)) ip netns exec "$P-a" \
		iperf3 -c 10.69.0.3 -p 5400 -t "$SECS" --connect-timeout 3000 -J "$@" >"$work/iperf.json"
}
rx_a() { "$BIN" ports --control "$work/s.sock" -o json | python3 -c "import json,sys; print(next(p['rx_packets'] for p in json.load(sys.stdin) if p['name']=='$P-a'))"; }
tx_eth0() { ip -j -s -n "$P-a" link show eth0 | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['stats64']['tx']['packets'])"; }

one() { # one run with flags $1, named $2
	local flags=$1 name=$2 out="" c0 c1
	# usw_run's background start may truncate its log only after its first
	# look for "ready": the last run's log must not be there to be seen.
	rm -f "$work/err"
	# shellcheck disable=SC2086
	usw_run $flags
	ip netns exec "$P-a" ping -c 2 -i 0.2 -W 2 -q 10.69.0.3 >/dev/null
	if [[ " $ONLY " == *" tcp "* ]]; then
		server
		c0=$(cpu)
		client
		c1=$(cpu)
		out+=$(python3 - "$work/iperf.json" "$c0" "$c1" "$tck" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["end"]["sum_received"]
g = e["bits_per_second"] / 1e9
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / float(sys.argv[4])
print(f" tcp {g:.2f} Gbit/s, {cpu / (g * e['seconds']):.3f} cpu-s/Gbit;", end="")
PY
)
	fi
	if [[ " $ONLY " == *" udp "* ]]; then
		server
		local r0 t0 r1 t1
		r0=$(rx_a) t0=$(tx_eth0) c0=$(cpu)
		client -u -l 64 -b 0
		c1=$(cpu) r1=$(rx_a) t1=$(tx_eth0)
		out+=$(python3 - "$work/iperf.json" "$r0" "$r1" "$t0" "$t1" "$c0" "$c1" "$tck" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["end"]
s, r = e["sum"], e["sum_received"]
read, sent = int(sys.argv[3]) - int(sys.argv[2]), int(sys.argv[5]) - int(sys.argv[4])
cpu = (float(sys.argv[7]) - float(sys.argv[6])) / float(sys.argv[8])
secs = r["seconds"]
print(f" udp64 offered {s['packets'] / secs / 1e3:.1f} kpps, uswitch read {read / secs / 1e3:.1f} kpps "
      f"(lost before it {100 * (sent - read) / max(sent, 1):.1f}%), {1e6 * cpu / max(read, 1):.2f} cpu-µs/frame, "
      f"delivered {(r['packets'] - r['lost_packets']) / secs / 1e3:.1f} kpps;", end="")
PY
)
	fi
	if [[ " $ONLY " == *" ping "* ]]; then
		out+=$(ip netns exec "$P-a" ping -A -q -c 2000 -W 2 10.69.0.3 | awk -F'[/ =]+' '/^rtt/ {printf " ping -A avg %.0f µs mdev %.0f µs;", $7 * 1000, $9 * 1000}')
	fi
	if [[ " $ONLY " == *" idle "* ]]; then
		c0=$(cpu)
		sleep 3
		c1=$(cpu)
		out+=$(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN {printf " idle %.2f cpu-s/3 s;", (b - a) / t}')
	fi
	out+=" rss $(awk '/VmRSS/ {print $2}' "/proc/$PID/status") KiB"
	usw_stop
	printf '%s %s:%s (load %s)\n' "$name" "$flags" "$out" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

printf '%s, %d cores, kernel %s, SECS=%s\n' "$(date -u +%FT%TZ)" "$(nproc)" "$(uname -r)" "$SECS"
for i in $(seq "$PAIRS"); do
	one "$A" "A$i"
	one "$B" "B$i"
done
