#!/usr/bin/env bash
# The switch path with a large FDB, end to end, the kernel bridge and
# uswitch side by side: M stations (default 1,000,000) are learned behind
# one port, then 1,000,000 frames are sent from another port, each to
# another station, spread over the first 1,000 stations and then over all
# M (the lookups of a table that size miss the CPU caches). bench/blast
# writes the frames (AF_PACKET, EtherType 0x88b5, dropped by the receiving
# namespace before any protocol).
#
#   - kernel: a bridge with two veth ports in a namespace; it learns the
#     stations from frames, and the whole path runs in the sender's system
#     call, so the figure is the sender's CPU time per frame;
#   - uswitch: an instance with two TAP endpoints (fdb_max above M,
#     port_security off, --busy-poll=false so that its CPU time is work,
#     not spinning); it learns the stations from paced frames (two passes:
#     a TAP drops what uswitch has not read yet), and the figure is its
#     CPU time per frame forwarded.
#
# Prints a markdown table: CPU per frame (ns) for 1,000 and M stations,
# and their ratio, for each, ROUNDS (default 3) times alternating. Needs
# root and python3; BIN as bench/net.sh. Everything is named us<pid>*,
# lives in namespaces it creates, and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/scale.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "$ME needs root (namespaces)"; exit 1; }
need_tools python3:python3
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
M=${M:-1000000}
ROUNDS=${ROUNDS:-3}
P=us$(($$ % 10000))
work=$(mktemp -d)
PID=""
cleanup() {
	set +e
	trap '' INT TERM
	usw_stop
	ip netns del "$P-k" 2>/dev/null
	rm -rf "$work"
}
on_exit
go build -o "$work/blast" ./bench/blast
blast() { local ns=$1; shift; ip netns exec "$ns" "$work/blast" "$@"; }
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# --- kernel: br0 with ports va and vb, whose peers a0 and b0 stay outside
# the bridge in the same namespace.
ip netns add "$P-k"
ip -n "$P-k" link set lo up
ip -n "$P-k" link add br0 type bridge
ip -n "$P-k" link set br0 up
for s in a b; do
	ip -n "$P-k" link add "v$s" type veth peer name "${s}0"
	ip -n "$P-k" link set "v$s" master br0 up
	ip -n "$P-k" link set "${s}0" up
done
KB=$(ip -n "$P-k" -j link show b0 | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["address"])')
log "kernel: learning $M stations"
blast "$P-k" -if a0 -n "$M" -m "$M" -mode learn -mac "$KB" >/dev/null
KLEARNED=$(ip netns exec "$P-k" bridge fdb show br br0 dynamic | grep -c ' dev va ')

# --- uswitch
cat >"$work/cfg.toml" <<TOML
name = "$P"
[defaults]
offload = true
fdb_max = $((M * 2))
fdb_ageing = "1h"
port_security = false
TOML
lan_pair 10.66.0.0/24 >>"$work/cfg.toml"
log "uswitch: learning $M stations"
usw_run --busy-poll=false
UB=$(ip -n "$P-b" -j link show eth0 | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["address"])')
blast "$P-a" -n "$M" -m "$M" -mode learn -mac "$UB" -pace 100 >/dev/null
blast "$P-a" -n "$M" -m "$M" -mode learn -mac "$UB" -pace 100 >/dev/null
# The FDB's size, from /metrics (uswitch_fdb_entries: the stations, b and
# the gateway); best effort.
ULEARNED=$(python3 - "$work/s.sock" <<'PY' || true
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(120)
s.connect(sys.argv[1])
s.sendall(b"GET /metrics HTTP/1.0\r\nHost: uswitch\r\n\r\n")
data = b""
while chunk := s.recv(1 << 16):
    data += chunk
for line in data.decode().splitlines():
    if line.startswith('uswitch_fdb_entries{network="lan"}'):
        print(int(float(line.split()[-1])))
PY
)
log "learned: kernel $KLEARNED, uswitch ${ULEARNED:-?}"
ucpu() { awk '{ printf "%.0f", ($14 + $15) * 10000000 }' "/proc/$PID/stat"; } # ns (USER_HZ 100)
utx() { "$BIN" ports --control "$work/s.sock" -o json | python3 -c "import json, sys; print(next(p['tx_packets'] for p in json.load(sys.stdin) if p['name'] == '$P-a'))"; }

declare -A K U
for r in $(seq "$ROUNDS"); do
	for m in 1000 "$M"; do
		out=$(blast "$P-k" -if b0 -n 1000000 -m "$m" -mac "$KB")
		K[$r.$m]=$(($(field "$out" cpu_ns) / $(field "$out" frames)))
		c0=$(ucpu) t0=$(utx)
		blast "$P-b" -n 1000000 -m "$m" -mac "$UB" >/dev/null
		c1=$(ucpu) t1=$(utx)
		U[$r.$m]=$(((c1 - c0) / (t1 - t0 > 0 ? t1 - t0 : 1)))
		log "round $r, $m stations: kernel ${K[$r.$m]} ns/frame, uswitch ${U[$r.$m]} ns/frame ($((t1 - t0)) forwarded)"
	done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "| round | kernel, 1000 stations | kernel, $M | ratio | uswitch, 1000 stations | uswitch, $M | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
	echo "| $r | ${K[$r.1000]} | ${K[$r.$M]} | $(ratio "${K[$r.$M]}" "${K[$r.1000]}") | ${U[$r.1000]} | ${U[$r.$M]} | $(ratio "${U[$r.$M]}" "${U[$r.1000]}") |"
done
echo
echo "CPU ns per frame: the kernel's is the sender's (the bridge runs in its system call: the packet"
echo "socket, both veths and the bridge), uswitch's is its own per frame forwarded (TAP read, switch,"
echo "TAP write). Learned of the $M stations: kernel $KLEARNED behind the first port, uswitch"
echo "${ULEARNED:-?} in its FDB (with b and the gateway); a station not learned is flooded."
