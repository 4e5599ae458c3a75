#!/usr/bin/env bash
# Why single-stream TCP through uswitch is bimodal: one instance, two
# endpoints a and b on one network (LINK=tap, the default, or veth), and
# RUNS (default 12) runs of iperf3 -t SECS (default 5) from a to b for each
# placement in PLACES, the placements alternating within each run. While
# iperf3 runs, bench/tasks.py samples every 100 ms the CPU each thread was
# last on (/proc/PID/task/TID/stat field 39), its policy (SCHED_IDLE or
# normal) and state, and the CPU time of the busy-poll thread, the sender
# and the receiver; the busy-poll thread's sleeps and lifts come from the
# control API (/metrics).
#
# A placement is "free" (none) or a comma-separated list of sN (the
# sender on CPU N, taskset), rN (the receiver), tN (the busy-poll thread,
# taskset -p on its thread id; the others run where the scheduler puts
# them). Default PLACES="free".
#
# Prints a line per run (Gbit/s; where each of poll, snd and rcv was, as
# the share of samples per CPU; their CPU seconds; lifts, sleeps; the most
# common joint placements), then a table of Gbit/s per placement; with OUT
# set, every run's record (JSON lines) is written there. INTERVAL is the
# sampling period (default 0.1 s). Any further arguments go to `uswitch
# run`.
# Everything is named um<pid>*, lives in namespaces it creates, and is
# removed on exit, whichever way the script ends. Needs root, iperf3,
# python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/bimodal.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "$ME needs root (namespaces)"; exit 1; }
need_tools iperf3:iperf3 python3:python3 curl:curl taskset:util-linux
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
SECS=${SECS:-5}
RUNS=${RUNS:-12}
PLACES=${PLACES:-free}
LINK=${LINK:-tap}
case $LINK in tap | veth) ;; *) log "LINK is tap or veth"; exit 1 ;; esac
P=um$(($$ % 10000))
work=$(mktemp -d)
OUT=${OUT:-}
PID=""
SAMPLER=""
cleanup() {
	set +e
	trap '' INT TERM
	[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
	[ -f "$work/iperf.pid" ] && kill_iperf_server "$work/iperf.pid"
	usw_stop
	rm -rf "$work"
}
on_exit

usw_lan 10.66.0.0/24 "$LINK" "$@"

# tcpstat FILE: the TCP counters (/proc/net/netstat TcpExt, /proc/net/snmp
# Tcp) of a's and b's namespaces and both eth0s' drops, as JSON, to FILE.
tcpstat() {
	local ns
	{
		for ns in a b; do
			echo "$ns"
			ip netns exec "$P-$ns" cat /proc/net/netstat /proc/net/snmp
			ip -n "$P-$ns" -s -o link show eth0
		done
	} | python3 -c '
import json, sys
out, ns, hdr = {}, None, {}
for line in sys.stdin:
    f = line.split()
    if f and f[0] in ("a", "b") and len(f) == 1:
        ns = f[0]
        out[ns] = {}
        continue
    if f and f[0].endswith(":") and not f[1].lstrip("-").isdigit():
        hdr[f[0]] = f[1:]
    elif f and f[0] in ("TcpExt:", "Tcp:") and f[0] in hdr:
        out[ns].update({f"{f[0][:-1]}.{k}": int(v) for k, v in zip(hdr[f[0]], f[1:])})
    elif "eth0" in line and "RX:" in line:
        x = line.split("\\")
        rx = x[3].split()
        tx = x[5].split()
        out[ns]["eth0.rx_dropped"] = int(rx[3])
        out[ns]["eth0.tx_dropped"] = int(tx[3])
print(json.dumps(out))' >"$1"
}

metrics() {
	curl -s --unix-socket "$work/s.sock" http://uswitch/metrics |
		awk '/^uswitch_busy_poll_(sleeps|lifts)_total/ { printf "%s=%s ", $1, $2 }'
}

port=5400
# iperf_run SND_CPU RCV_CPU SAMPLE_ARGS... -> iperf3 JSON in $work/iperf.json,
# the sampler's in $work/tasks.json.
iperf_run() {
	local scpu=$1 rcpu=$2 i spid rpid
	shift 2
	local sx=() rx=()
	[ -n "$scpu" ] && sx=(taskset -c "$scpu")
	[ -n "$rcpu" ] && rx=(taskset -c "$rcpu")
	port=$((port + 1))
	ip netns exec "$P-b" "${rx[@]}" iperf3 -s -1 -D -p "$port" -I "$work/iperf.pid" >/dev/null
	for i in $(seq 50); do
		ip netns exec "$P-b" ss -Htln "sport = :$port" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	rpid=$(cat "$work/iperf.pid")
	ip netns exec "$P-a" "${sx[@]}" iperf3 -c 10.66.0.3 -p "$port" -t "$SECS" --connect-timeout 3000 -J >"$work/iperf.json" &
	spid=$!
	python3 bench/tasks.py "${INTERVAL:-0.1}" "usw:$PID" "snd:$spid/$spid" "rcv:$rpid/$rpid" "$@" >"$work/tasks.json" &
	SAMPLER=$!
	wait "$spid" || log "iperf3 client exited $?"
	kill "$SAMPLER"
	wait "$SAMPLER" || true
	SAMPLER=""
	kill_iperf_server "$work/iperf.pid"
}

# The busy-poll thread: the uswitch thread seen at SCHED_IDLE (policy 5)
# most often during a short transfer.
INTERVAL=0.01 SECS=1 iperf_run "" ""
POLL_TID=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = [r for r in d["threads"] if r["label"] == "usw"]
best = max(t, key=lambda r: (r["policies"].get("5", 0), r["cpu_s"]))
print(best["tid"] if best["policies"].get("5", 0) else "")' "$work/tasks.json")
if [ -z "$POLL_TID" ]; then
	log "no uswitch thread at SCHED_IDLE: not busy polling? (tN placements and poll= columns need it)"
fi
log "busy-poll thread: ${POLL_TID:-none}; placements: $PLACES; $RUNS runs of ${SECS}s; load $(cut -d' ' -f1-3 /proc/loadavg)"

cpus="0-$(($(nproc) - 1))"
for run in $(seq "$RUNS"); do
	for place in $PLACES; do
		s="" r="" t=""
		for x in ${place//,/ }; do
			case $x in s*) s=${x#s} ;; r*) r=${x#r} ;; t*) t=${x#t} ;; free) ;; *) log "bad placement $x"; exit 1 ;; esac
		done
		if [ -n "$POLL_TID" ]; then
			taskset -p -c "${t:-$cpus}" "$POLL_TID" >/dev/null
		fi
		before=$(metrics)
		tcpstat "$work/tcp-before.json"
		poll=()
		[ -n "$POLL_TID" ] && poll=("poll:$PID/$POLL_TID")
		iperf_run "$s" "$r" "${poll[@]}"
		after=$(metrics)
		tcpstat "$work/tcp-after.json"
		python3 - "$work" "$run" "$place" "$before" "$after" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY' | tee -a "$work/runs.jsonl" >/dev/null
import json, sys
work, run, place, before, after, load = sys.argv[1:]
it = json.load(open(work + "/iperf.json"))
d = json.load(open(work + "/tasks.json"))
def kv(s): return {k: float(v) for k, v in (x.split("=") for x in s.split())}
b, a = kv(before), kv(after)
rec = {"run": int(run), "place": place, "load": float(load),
       "gbit": it["end"]["sum_received"]["bits_per_second"] / 1e9,
       "retr": it["end"]["sum_sent"].get("retransmits"),
       "sleeps": a.get("uswitch_busy_poll_sleeps_total", 0) - b.get("uswitch_busy_poll_sleeps_total", 0),
       "lifts": a.get("uswitch_busy_poll_lifts_total", 0) - b.get("uswitch_busy_poll_lifts_total", 0),
       "threads": {}, "usw_cpu_s": 0.0, "joint": d["joint"]}
for r in d["threads"]:
    if r["label"] == "usw":
        rec["usw_cpu_s"] += r["cpu_s"]
    else:
        rec["threads"][r["label"]] = r
tb, ta = json.load(open(work + "/tcp-before.json")), json.load(open(work + "/tcp-after.json"))
rec["tcp"] = {f"{ns}.{k}": v - tb[ns].get(k, 0) for ns in ta for k, v in ta[ns].items()
              if v - tb[ns].get(k, 0) and not k.startswith(("Tcp.InSegs", "Tcp.OutSegs", "Tcp.CurrEstab", "TcpExt.TCPHPAcks", "TcpExt.TCPPureAcks", "TcpExt.TCPHPHits", "TcpExt.TCPOrigDataSent", "TcpExt.TCPDelivered", "TcpExt.DelayedACKs", "Tcp.ActiveOpens", "Tcp.PassiveOpens", "TcpExt.TCPAutoCorking", "TcpExt.TCPRcvCoalesce", "TcpExt.TCPBacklogCoalesce", "TcpExt.TW", "Tcp.EstabResets", "TcpExt.TCPTimeWaitOverflow", "TcpExt.TCPACKSkipped", "TcpExt.TCPWantZeroWindowAdv", "TcpExt.TCPToZeroWindowAdv", "TcpExt.TCPFromZeroWindowAdv", "TcpExt.TCPOrigDataSent"))}
print(json.dumps(rec))
PY
		python3 - "$work/runs.jsonl" <<'PY' >&2
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
def where(t):
    n = t["samples"] or 1
    cpus = " ".join(f"{c}:{100 * k // n}%" for c, k in sorted(t["cpus"].items()))
    idle = 100 * t["policies"].get("5", 0) // n
    run = 100 * t["states"].get("R", 0) // n
    sched = f" wait {t['wait_s']:.2f}s pre {t['preempted']}" if "wait_s" in t else ""
    return f"[{cpus} R{run}%{' idle' + str(idle) + '%' if t['label'] == 'poll' else ''} {t['cpu_s']:.2f}s{sched}]"
th = "  ".join(f"{k} {where(t)}" for k, t in sorted(r["threads"].items()))
top = sorted(r["joint"].items(), key=lambda kv: -kv[1])[:3]
n = sum(r["joint"].values()) or 1
j = ", ".join(f"{k} {100 * v // n}%" for k, v in top)
tcp = " ".join(f"{k}={v}" for k, v in sorted(r.get("tcp", {}).items()))
print(f"run {r['run']:2d} {r['place']:>10s} {r['gbit']:6.2f} Gbit/s retr {r['retr']} usw {r['usw_cpu_s']:.2f}s lifts {r['lifts']:.0f} sleeps {r['sleeps']:.0f}  {th}  | {j}  | {tcp}")
PY
		sleep 0.2
	done
done
if [ -n "$POLL_TID" ]; then taskset -p -c "$cpus" "$POLL_TID" >/dev/null; fi
python3 - "$work/runs.jsonl" <<'PY'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rs:
    by.setdefault(r["place"], []).append(r["gbit"])
print("| placement | runs | median Gbit/s | min | max | Gbit/s per run |")
print("|---|---:|---:|---:|---:|---|")
for p, v in by.items():
    print(f"| {p} | {len(v)} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} | {' '.join(f'{x:.1f}' for x in v)} |")
PY
if [ -n "$OUT" ]; then cp "$work/runs.jsonl" "$OUT"; log "wrote $OUT"; fi
