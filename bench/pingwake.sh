#!/usr/bin/env bash
# Where a ping -A through uswitch spends its time: the same flood ping
# (ping -A, COUNT echoes, the time per echo = ping's total time / COUNT)
# through a kernel bridge (two veth pairs on a bridge, the baseline) and
# through one uswitch instance (two TAP endpoints, busy-poll thread, any
# further arguments go to `uswitch run`), RUNS times, the setups taking
# turns within each run, with the pinger and uswitch's busy-poll thread
# placed on the CPUs in turn:
#
#   free      nobody pinned (what bench/net.sh measures)
#   together  the busy-poll thread and the pinger pinned to CPU 0
#   apart     the busy-poll thread on CPU 0, the pinger on CPU 1
#   loop@0    the busy-poll thread on CPU 0, the pinger free
#   warm      as loop@0, with a busy loop at SCHED_IDLE on every other
#             CPU: those CPUs never halt, yet give way to any thread
#
# The busy-poll thread is the uswitch thread with the most CPU time after
# a warm-up ping; it is pinned with taskset -p and unpinned after. Each
# figure is the median over the runs of the per-echo time, with the ratio
# to the kernel bridge's figure of the same run (median, min-max); the
# watchdog's lifts during each setup come from the control API (/metrics).
#
# The guest's cpuidle (guest_halt_poll_ns) and the CPU latency request
# decide what waking a halted CPU costs: see bench/RESULTS-limits.md.
# Everything is named uw<pid>*, lives in namespaces this script creates,
# and is removed on exit, whichever way it ends. Needs root, ping, taskset
# and chrt (util-linux), python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/pingwake.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "$ME needs root (namespaces)"; exit 1; }
need_tools ping:iputils-ping taskset:util-linux chrt:util-linux python3:python3 curl:curl
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
RUNS=${RUNS:-3}
COUNT=${COUNT:-10000}
[ "$(nproc)" -ge 2 ] || { log "needs 2 CPUs or more"; exit 1; }
P=uw$(($$ % 10000))
work=$(mktemp -d)
PID=""
SPIN=()
cleanup() {
	set +e
	trap '' INT TERM
	local s
	for s in "${SPIN[@]}"; do kill "$s" 2>/dev/null && wait "$s" 2>/dev/null; done
	usw_stop
	for s in kbr ka kb; do ip netns del "$P-$s" 2>/dev/null; done
	rm -rf "$work"
}
on_exit

# kernel: two veth pairs into a bridge in a namespace of its own
ip netns add "$P-kbr"
ip -n "$P-kbr" link add br0 type bridge
ip -n "$P-kbr" link set br0 up
i=2
for side in ka kb; do
	ip netns add "$P-$side"
	ip link add eth0 netns "$P-$side" type veth peer name "v$side" netns "$P-kbr"
	ip -n "$P-kbr" link set "v$side" master br0 up
	ip -n "$P-$side" addr add "10.98.0.$i/24" dev eth0
	ip -n "$P-$side" link set eth0 up
	i=$((i + 1))
done
ip netns exec "$P-ka" ping -c 2 -i 0.2 -W 2 -q 10.98.0.3 >/dev/null

usw_lan 10.98.1.0/24 "" "$@"

# per_echo NS ADDR CPUS: µs per echo of a ping -A of COUNT from NS (the
# pinger on CPUS, "" for free).
per_echo() {
	local pin=() out
	[ -n "$3" ] && pin=(taskset -c "$3")
	out=$(ip netns exec "$1" "${pin[@]}" ping -A -c "$COUNT" -q "$2" | grep -o 'time [0-9]*ms')
	python3 -c "print(round(${out//[^0-9]/} * 1000 / $COUNT, 1))"
}

lifts() {
	curl -s --unix-socket "$work/s.sock" http://uswitch/metrics | awk '/^uswitch_busy_poll_lifts_total/{print $2}'
}

per_echo "$P-a" 10.98.1.3 "" >/dev/null # warm-up: the busy-poll thread has the CPU time
TID=$(for t in /proc/"$PID"/task/*; do
	echo "${t##*/} $(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
done | sort -k2 -n | tail -1 | cut -d' ' -f1)
ALL=0-$(($(nproc) - 1))
log "busy-poll thread $TID; $RUNS runs of ping -A -c $COUNT; load $(cut -d' ' -f1-3 /proc/loadavg)"

PLACES="free together apart loop@0 warm"
for r in $(seq "$RUNS"); do
	k=$(per_echo "$P-ka" 10.98.0.3 "")
	echo "run $r kernel $k"
	for place in $PLACES; do
		loop=0 pinger=""
		case $place in
		free) loop=$ALL ;;
		together) pinger=0 ;;
		apart) pinger=1 ;;
		warm)
			for c in $(seq 1 $(($(nproc) - 1))); do
				taskset -c "$c" chrt -i 0 sh -c 'while :; do :; done' &
				SPIN+=($!)
			done
			;;
		esac
		taskset -p -c "$loop" "$TID" >/dev/null
		l0=$(lifts)
		u=$(per_echo "$P-a" 10.98.1.3 "$pinger")
		l1=$(lifts)
		for s in "${SPIN[@]}"; do kill "$s" && wait "$s" 2>/dev/null || true; done
		SPIN=()
		echo "run $r $place $u $k $((l1 - l0))"
	done
	taskset -p -c "$ALL" "$TID" >/dev/null
done | tee "$work/runs" >&2

python3 - "$work/runs" "$PLACES" <<'EOF'
import sys, statistics as st
rows, places = {}, sys.argv[2].split()
for line in open(sys.argv[1]):
    f = line.split()
    if f[2] == "kernel":
        rows.setdefault("kernel", []).append((float(f[3]), 1.0, 0))
    else:
        rows.setdefault(f[2], []).append((float(f[3]), float(f[3]) / float(f[4]), int(f[5])))
print("| setup | µs per echo (median) | ratio to the kernel (min-max) | watchdog lifts |")
print("|---|---:|---:|---:|")
for name in ["kernel"] + places:
    v = rows[name]
    us, ratio, lifts = [x[0] for x in v], [x[1] for x in v], [x[2] for x in v]
    rr = f"{st.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})" if name != "kernel" else "1"
    print(f"| {name} | {st.median(us):.1f} | {rr} | {sum(lifts)} |")
EOF
