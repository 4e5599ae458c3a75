#!/usr/bin/env bash
# Side-by-side, in the same run with the same tools: the kernel, Open
# vSwitch's userspace datapath and uswitch instances, RUNS times (default
# 5), every setup measured in turn within each run (its order rotated from
# one run to the next) so that all share the machine's moments, and each
# run's figure of a setup divided by the kernel's of that same run.
#
# Setups: "kernel" (veth pairs on a bridge, a router namespace, iptables
# MASQUERADE), "Open vSwitch" (userspace datapath, TSO; L2 only), "uswitch"
# (the default: offload = true, the busy-poll thread) and "uswitch +
# latency" (the same with --cpu-latency: the thread holds a CPU latency
# request of 0 while it spins, so idle CPUs poll instead of halting).
# EXTRA=1 adds "uswitch readers" (--busy-poll=false: a reader goroutine per
# port) and "uswitch plain" (offload = false, reader goroutines).
#
#   - L2: four namespaces a, b, c, d on each switch: TCP 1 stream a->b (tcp1),
#     TCP 2 streams a->b (iperf3 -P 2, tcp2), TCP 2 streams between two
#     different pairs at once, a->b and c->d (tcp2x: the sum), ping -A
#     (flood: the median of three runs of 10000) and paced ping (paced),
#     UDP 64-byte datagrams delivered per second and the share of the
#     sender's datagrams not delivered (udp64);
#   - routed: two namespaces on two subnets through a router: TCP 1 stream
#     (rtcp1) and ping -A (rflood);
#   - masquerade: a namespace reaching a "host" namespace through the
#     kernel's MASQUERADE in a router namespace, and through each
#     instance's uplink: TCP 1 stream (ntcp1).
#
# For uswitch and Open vSwitch the CPU time of the switch's process
# (utime + stime from /proc/PID/stat over the measure) is divided by the
# work: ms per Gbit received for TCP (the same as ms per second at 1
# Gbit/s), s per million datagrams delivered for UDP. A TAP's receive path
# runs in the writer's system call, so uswitch's figure includes the
# receiving endpoint's kernel work for what it writes; the kernel's own
# work is in softirq and its endpoints' system calls, so it has no figure.
#
# Writes bench/RESULTS.md (overwritten each run): a table with, per
# measure and setup, the median figure, the median of the runs' ratios to
# the kernel with their spread (min-max), and the CPU time per unit of
# work; then every run's ratios. With PROFILE=1 (the default) it then
# profiles the default uswitch instance over one more TCP 1 stream measure
# and one more UDP 64 B measure (the control API's GET
# /debug/pprof/profile for SECS seconds, while iperf3 runs) and appends the
# top 15 of each.
#
# Open vSwitch (L2 only) is ovs-vswitchd with the userspace datapath
# (datapath_type=netdev) and userspace TSO (other_config:
# userspace-tso-enable=true), its ports TAPs (type=tap) that it opens with
# vnet headers and that the script then moves into the endpoint
# namespaces, as uswitch's are. ovsdb-server and ovs-vswitchd are this
# script's own: started inside a namespace of its own (so the bridge's
# internal port and OVS's TAPs never appear in the root namespace), with
# their database, sockets, pid and log files in the run's temporary
# directory, and stopped by the PIDs it started; the system's Open vSwitch
# service, if any, is not used or touched. OVS=0 leaves it out.
#
# Knobs: RUNS (default 5), SECS (seconds per iperf3 test, default 4),
# PROFILE (1/0), BIN, OVS (1/0), EXTRA (0/1, above), USW_ARGS (more
# `uswitch run` flags for every uswitch instance, e.g. "--io-uring"),
# XFLAGS (adds a setup "uswitch XFLAGS": the default instance with these
# run flags as well, e.g. XFLAGS="--poll-threads 2"), LINK (tap, the
# default, or veth: the uswitch instances' endpoints are veth pairs,
# uswitch reading its side with a packet socket, instead of TAPs), ONLY (a
# space-separated list of measure keys to run, e.g. "tcp1 flood"; the
# others are left out of the table; the keys: tcp1 tcp2 tcp2x flood paced
# udp64 rtcp1 rflood ntcp1), NOTE (a line written under the table, e.g.
# what else loaded the machine), RESULTS (the file written), HALTPOLL_NS
# (below).
#
# A guest whose cpuidle driver is haltpoll halts an idle vCPU after
# polling for up to guest_halt_poll_ns (the kernel's default is 200000; a
# machine may set 0), and waking a halted vCPU costs a VM exit. The kernel
# bridge answers a ping inside the pinger's own system call and never waits
# for one; every hop through uswitch wakes a thread, often on the other
# vCPU. RESULTS.md records the value the run had. HALTPOLL_NS=N sets it for
# the run (all setups alike) and restores the old value on exit.
#
# Needs root, iperf3, ping, iptables, python3 (to read iperf3's JSON and
# write the tables), curl (the profiles) and, unless OVS=0, ovs-vswitchd,
# ovsdb-server, ovsdb-tool and ovs-vsctl: installed with apt-get when
# missing (openvswitch-switch, with a policy-rc.d that keeps the package
# from starting its service for the install), or named for you to
# install; and go for the profile report. Everything it makes is named
# ub<pid>*, lives in namespaces it creates (the kernel bridge and router
# too, so the root namespace's links, routes, iptables and sysctls are not
# touched), and is removed on exit, whichever way the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/net.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root (namespaces)"; exit 1; }
OVS=${OVS:-1}
# The tools, and the Debian/Ubuntu package of each.
tools=(iperf3:iperf3 ping:iputils-ping iptables:iptables python3:python3 curl:curl)
[ "$OVS" = 1 ] && tools+=(ovs-vswitchd:openvswitch-switch ovsdb-server:openvswitch-switch
	ovsdb-tool:openvswitch-common ovs-vsctl:openvswitch-common)
need_tools "${tools[@]}"
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
RUNS=${RUNS:-5}
SECS=${SECS:-4}
PROFILE=${PROFILE:-1}
EXTRA=${EXTRA:-0}
LINK=${LINK:-tap}
case $LINK in tap | veth) ;; *) log "LINK is tap or veth"; exit 1 ;; esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { log "RUNS is a whole number from 1"; exit 1; }
RESULTS=${RESULTS:-bench/RESULTS.md}
P=ub$(($$ % 10000))
# The setups, in their order in the tables: k kernel, v Open vSwitch, p
# uswitch (busy-poll, the default), l uswitch + latency request; with
# EXTRA=1 also o uswitch readers (--busy-poll=false) and u uswitch plain.
SETUPS="k"
[ "$OVS" = 1 ] && SETUPS+=" v"
SETUPS+=" p l"
[ "$EXTRA" = 1 ] && SETUPS+=" o u"
[ -n "${XFLAGS:-}" ] && SETUPS+=" x"
declare -A NAME=([k]=kernel [v]="Open vSwitch" [p]=uswitch [l]="uswitch + latency" [o]="uswitch readers" [u]="uswitch plain" [x]="uswitch ${XFLAGS:-}")
declare -A INST=([p]=${P}p [l]=${P}l [o]=${P}o [u]=${P}u [x]=${P}x) # uswitch instance names
declare -A UPID=()                                         # setup -> pid whose CPU time counts
OVSDB_PID=""
VSWITCHD_PID=""
work=$(mktemp -d)
KERNEL_NS="$P-kbr $P-ka $P-kb $P-kc $P-kd $P-krt $P-kra $P-krb $P-knr $P-kna $P-knh"
OVS_NS="$P-vs $P-va $P-vb $P-vc $P-vd"

HALTPOLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALTPOLL_OLD=""
cleanup() {
	set +e
	trap '' INT TERM
	[ -n "$HALTPOLL_OLD" ] && echo "$HALTPOLL_OLD" >"$HALTPOLL"
	local s
	for s in p l o u x; do
		[ -n "${UPID[$s]:-}" ] && stop_pid "${UPID[$s]}"
		UPID[$s]=""
	done
	[ -n "$VSWITCHD_PID" ] && stop_pid "$VSWITCHD_PID"
	[ -n "$OVSDB_PID" ] && stop_pid "$OVSDB_PID"
	VSWITCHD_PID="" OVSDB_PID=""
	for f in "$work"/iperf-*.pid; do [ -e "$f" ] && kill_iperf_server "$f"; done
	for ns in $KERNEL_NS $OVS_NS; do ip netns del "$ns" 2>/dev/null; done
	for s in p l o u x; do
		[ -f "$work/${INST[$s]}.toml" ] || continue
		"$BIN" down --config "$work/${INST[$s]}.toml" >/dev/null 2>&1 || log "uswitch down ${INST[$s]} failed"
		# A clean exit removes its lock file, one that was killed does not;
		# ours are named after this script's pid and no one else uses them.
		rm -f "/run/uswitch/${INST[$s]}.lock"
	done
	rm -rf "$work"
}
on_exit

if [ -n "${HALTPOLL_NS:-}" ]; then
	[ -w "$HALTPOLL" ] || { log "HALTPOLL_NS: no $HALTPOLL on this machine"; exit 1; }
	HALTPOLL_OLD=$(cat "$HALTPOLL")
	echo "$HALTPOLL_NS" >"$HALTPOLL"
fi

# --- kernel: four veth pairs into a bridge that lives in its own namespace
ip netns add $P-kbr
ip -n $P-kbr link add br0 type bridge
ip -n $P-kbr link set br0 up
i=1
for side in ka kb kc kd; do
	ip netns add $P-$side
	ip link add eth0 netns $P-$side type veth peer name v$side netns $P-kbr
	ip -n $P-kbr link set v$side master br0 up
	ip -n $P-$side addr add 10.99.0.$((i + 1))/24 dev eth0
	ip -n $P-$side link set eth0 up
	ip -n $P-$side link set lo up
	i=$((i + 1))
done

# --- kernel: a router namespace between two subnets (its own ip_forward)
ip netns add $P-krt
ip netns exec $P-krt sysctl -qw net.ipv4.ip_forward=1
ip -n $P-krt link set lo up
i=1
for side in kra krb; do
	ip netns add $P-$side
	ip link add eth0 netns $P-$side type veth peer name v$side netns $P-krt
	ip -n $P-krt addr add 10.97.$i.1/24 dev v$side
	ip -n $P-krt link set v$side up
	ip -n $P-$side addr add 10.97.$i.2/24 dev eth0
	ip -n $P-$side link set eth0 up
	ip -n $P-$side link set lo up
	ip -n $P-$side route add default via 10.97.$i.1
	i=$((i + 1))
done

# --- kernel: masquerade. A client namespace, a router namespace with its own
# ip_forward and an iptables MASQUERADE rule (both local to it), and a "host"
# namespace that has no route back to the client's subnet.
ip netns add $P-knr
ip netns exec $P-knr sysctl -qw net.ipv4.ip_forward=1
ip netns add $P-kna
ip netns add $P-knh
ip link add eth0 netns $P-kna type veth peer name vkna netns $P-knr
ip link add eth0 netns $P-knh type veth peer name vknh netns $P-knr
ip -n $P-knr addr add 10.95.1.1/24 dev vkna
ip -n $P-knr addr add 10.95.9.1/30 dev vknh
ip -n $P-kna addr add 10.95.1.2/24 dev eth0
ip -n $P-knh addr add 10.95.9.2/30 dev eth0
for ns in knr kna knh; do ip -n $P-$ns link set lo up; done
ip -n $P-knr link set vkna up
ip -n $P-knr link set vknh up
ip -n $P-kna link set eth0 up
ip -n $P-knh link set eth0 up
ip -n $P-kna route add default via 10.95.1.1
ip netns exec $P-knr iptables -t nat -A POSTROUTING -s 10.95.1.0/24 -o vknh -j MASQUERADE

# --- Open vSwitch: ovsdb-server and ovs-vswitchd of this run's own, in
# namespace $P-vs, a bridge with the userspace datapath and userspace TSO,
# and four TAP ports moved into $P-va .. $P-vd (10.75.0.0/24). ip netns exec
# execs the daemon, so $! is its PID; neither is told to --detach.
ovs_start() {
	local d=$work/ovs i s
	mkdir -p "$d"
	export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d OVS_SYSCONFDIR=$d
	vsctl() { ovs-vsctl --db="unix:$d/db.sock" --timeout=20 "$@"; }
	ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
	ip netns add $P-vs
	ip -n $P-vs link set lo up
	ip netns exec $P-vs ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
		--pidfile="$d/ovsdb-server.pid" --unixctl="$d/ovsdb-server.ctl" \
		--log-file="$d/ovsdb-server.log" </dev/null >/dev/null 2>&1 &
	OVSDB_PID=$!
	for i in $(seq 100); do
		[ -S "$d/db.sock" ] && break
		alive "$OVSDB_PID" || break
		sleep 0.1
	done
	vsctl --no-wait init
	# Read once at start: set before ovs-vswitchd runs.
	vsctl --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
	ip netns exec $P-vs ovs-vswitchd "unix:$d/db.sock" \
		--pidfile="$d/ovs-vswitchd.pid" --unixctl="$d/ovs-vswitchd.ctl" \
		--log-file="$d/ovs-vswitchd.log" </dev/null >/dev/null 2>&1 &
	VSWITCHD_PID=$!
	vsctl add-br br0 -- set bridge br0 datapath_type=netdev
	i=2
	for s in va vb vc vd; do
		vsctl add-port br0 "t$s" -- set Interface "t$s" type=tap
		ip netns add $P-$s
		ip -n $P-vs link set "t$s" netns $P-$s
		ip -n $P-$s link set "t$s" name eth0
		ip -n $P-$s addr add 10.75.0.$i/24 dev eth0
		ip -n $P-$s link set eth0 up
		ip -n $P-$s link set lo up
		i=$((i + 1))
	done
	grep -q 'Userspace TCP Segmentation Offloading support enabled' "$d/ovs-vswitchd.log" ||
		log "Open vSwitch: its log does not say userspace TSO is on: $(tail -n 3 "$d/ovs-vswitchd.log" | tr '\n' ' ')"
}
if [ "$OVS" = 1 ]; then
	ovs_start
	OVS_VERSION=$(ovs-vswitchd --version | head -n1 | awk '{ print $NF }')
	UPID[v]=$VSWITCHD_PID
fi

# --- uswitch: the same endpoints, switched, routed and masqueraded.
# usw_config NAME PREFIX OFFLOAD NET: endpoints are namespaces PREFIX-a ..
# PREFIX-d (L2), PREFIX-ra, PREFIX-rb (routed), PREFIX-m (masqueraded) and
# the uplink's host side PREFIX-h; subnets are 10.NET-x.*:
#   10.NET.0.0/24 L2, 10.(NET-2).1-2.0/24 routed, 10.(NET-4).1.0/24 and
#   10.(NET-4).9.0/30 masquerade. Every endpoint is link = $LINK.
usw_config() {
	local name=$1 pfx=$2 offload=$3 l2=$4 rt=$(($4 - 2)) nat=$(($4 - 4)) e
	cat <<TOML
name = "$name"
[defaults]
offload = $offload
[uplink]
address = "10.$nat.9.1/30"
host_address = "10.$nat.9.2/30"
netns = "$pfx-h"
routes = false
[[network]]
name = "m"
subnet = "10.$nat.1.0/24"
[[network]]
name = "lan"
subnet = "10.$l2.0.0/24"
[[network]]
name = "r1"
subnet = "10.$rt.1.0/24"
isolate = false
[[network]]
name = "r2"
subnet = "10.$rt.2.0/24"
isolate = false
TOML
	for e in m:m a:lan b:lan c:lan d:lan ra:r1 rb:r2; do
		printf '[[endpoint]]\nname = "%s"\nnetwork = "%s"\nlink = "%s"\n' "$pfx-${e%%:*}" "${e#*:}" "$LINK"
	done
}
# busy-poll (p): 10.87 L2, 10.85 routed, 10.83 masquerade;
# busy-poll + latency (l): 10.81, 10.79, 10.77;
# readers (o): 10.93, 10.91, 10.89; plain (u): 10.98, 10.96, 10.94;
# XFLAGS (x): 10.71, 10.69, 10.67.
# Kernel: 10.99, 10.97, 10.95; Open vSwitch: 10.75 (L2).
declare -A NET=([p]=87 [l]=81 [o]=93 [u]=98 [x]=71)
declare -A OFFLOAD=([p]=true [l]=true [o]=true [u]=false [x]=true)
declare -A FLAGS=([p]="--busy-poll --cpu-latency=false" [l]="--busy-poll --cpu-latency"
	[o]="--busy-poll=false" [u]="--busy-poll=false" [x]="--busy-poll --cpu-latency=false ${XFLAGS:-}")

# usw_start SETUP: starts its instance in the background; sets UPID.
usw_start() {
	local s=$1 name=${INST[$1]}
	usw_config "$name" "$P-$s" "${OFFLOAD[$s]}" "${NET[$s]}" >"$work/$name.toml"
	# shellcheck disable=SC2086 # FLAGS split on purpose
	"$BIN" run --config "$work/$name.toml" --control "$work/$name.sock" ${FLAGS[$s]} ${USW_ARGS:-} \
		>"$work/$name.out" 2>"$work/$name.err" &
	UPID[$s]=$!
}
usw_ready() {
	local s=$1 name=${INST[$1]} i
	for i in $(seq 200); do
		grep -q 'msg=ready' "$work/$name.err" && return 0
		alive "${UPID[$s]}" || break
		sleep 0.1
	done
	log "uswitch instance $name did not become ready:"
	cat "$work/$name.err" >&2
	return 1
}
for s in $SETUPS; do case $s in k | v) ;; *) usw_start "$s" ;; esac; done
for s in $SETUPS; do case $s in k | v) ;; *) usw_ready "$s" ;; esac; done

# The endpoints of each setup: L2 a, b, c, d and the addresses of b and d
# (uswitch gives a network's endpoints .2, .3, ... in the file's order);
# routed client, server, address; masquerade client, server, address. "-"
# where a setup has none (Open vSwitch is L2 only).
declare -A L2A L2B L2C L2D L2IPB L2IPD RTC RTS RTIP NATC NATS NATIP
L2A[k]=$P-ka L2B[k]=$P-kb L2C[k]=$P-kc L2D[k]=$P-kd L2IPB[k]=10.99.0.3 L2IPD[k]=10.99.0.5
RTC[k]=$P-kra RTS[k]=$P-krb RTIP[k]=10.97.2.2 NATC[k]=$P-kna NATS[k]=$P-knh NATIP[k]=10.95.9.2
L2A[v]=$P-va L2B[v]=$P-vb L2C[v]=$P-vc L2D[v]=$P-vd L2IPB[v]=10.75.0.3 L2IPD[v]=10.75.0.5
RTC[v]=- RTS[v]=- RTIP[v]=- NATC[v]=- NATS[v]=- NATIP[v]=-
for s in p l o u x; do
	n=${NET[$s]}
	L2A[$s]=$P-$s-a L2B[$s]=$P-$s-b L2C[$s]=$P-$s-c L2D[$s]=$P-$s-d L2IPB[$s]=10.$n.0.3 L2IPD[$s]=10.$n.0.5
	RTC[$s]=$P-$s-ra RTS[$s]=$P-$s-rb RTIP[$s]=10.$((n - 2)).2.2
	NATC[$s]=$P-$s-m NATS[$s]=$P-$s-h NATIP[$s]=10.$((n - 4)).9.2
done

# Warm-up: ARP, FDB, conntrack; tells early when a path does not work.
for s in $SETUPS; do
	for t in "${L2A[$s]} ${L2IPB[$s]}" "${L2C[$s]} ${L2IPD[$s]}" "${RTC[$s]} ${RTIP[$s]}" "${NATC[$s]} ${NATIP[$s]}"; do
		set -- $t
		[ "$1" = - ] && continue
		ip netns exec "$1" ping -c 3 -i 0.2 -W 2 -q "$2" >/dev/null || log "warm-up ping $1 -> $2 failed"
	done
done

# --- measures. Each runs under a timeout; a failure prints why and records
# "-" instead of stopping the run. Every iperf3 test gets its own port and
# server pid file, and its server is killed if it outlived the test.
port=5200

# iperf_start NS_CLIENT NS_SERVER IP [iperf3 client args...]: starts a
# server and, in the background, its client; sets IPID (the client) and
# IPORT. iperf_end KIND: waits for the client and prints "FIGURE WORK
# LOSS": KIND tcp: receiver Gbit/s (all streams), Gbit received, "-";
# udp: datagrams delivered (received minus lost) in kpps, millions of them,
# and the % of the sender's datagrams not delivered.
iperf_start() {
	local c=$1 s=$2 ip=$3 i
	shift 3
	port=$((port + 1))
	IPORT=$port
	ip netns exec "$s" iperf3 -s -1 -D -B "$ip" -p "$port" -I "$work/iperf-$port.pid" >/dev/null
	for i in $(seq 50); do
		ip netns exec "$s" ss -Htln "sport = :$port" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	timeout --foreground -k 5 $((SECS + 30)) \
		ip netns exec "$c" iperf3 -c "$ip" -p "$port" -t "$SECS" --connect-timeout 3000 -J "$@" >"$work/iperf-$port.json" &
	IPID=$!
}
iperf_end() {
	local kind=$1 pid=$2 port=$3 rc=0
	wait "$pid" || rc=$?
	kill_iperf_server "$work/iperf-$port.pid"
	iperf_figure "$kind" "$port" "$rc"
}
# iperf_figure KIND PORT RC: the figures of the client of PORT that
# exited RC.
iperf_figure() {
	python3 - "$work/iperf-$2.json" "$1" "$3" <<'PY'
import json, sys
path, kind, rc = sys.argv[1], sys.argv[2], sys.argv[3]
if rc == "124":
    sys.exit("iperf3 client killed: no result in the time allowed (timeout)")
try:
    d = json.load(open(path))
except Exception as e:
    sys.exit(f"iperf3 exited {rc}, output is not JSON ({e})")
if d.get("error"):
    sys.exit(f"iperf3: {d['error']}")
r = d["end"]["sum_received"]
if kind == "tcp":
    print("%.3f %.4f -" % (r["bits_per_second"] / 1e9, r["bytes"] * 8 / 1e9))
else:
    secs = r["seconds"]
    if secs <= 0:
        sys.exit("iperf3: receiver measured 0 seconds")
    got = r["packets"] - r["lost_packets"]
    sent = d["end"].get("sum_sent", d["end"]["sum"])["packets"]
    print("%.1f %.6f %.1f" % (got / secs / 1e3, got / 1e6, 100 * (1 - got / sent) if sent else 0))
PY
}
# tcp/tcp2/udp64 SETUP and tcp2x SETUP: the L2 measures; rtcp SETUP and
# ntcp SETUP routed and masqueraded.
tcp() { iperf_start "${L2A[$1]}" "${L2B[$1]}" "${L2IPB[$1]}" && iperf_end tcp "$IPID" "$IPORT"; }
tcp2() { iperf_start "${L2A[$1]}" "${L2B[$1]}" "${L2IPB[$1]}" -P 2 && iperf_end tcp "$IPID" "$IPORT"; }
udp64() { iperf_start "${L2A[$1]}" "${L2B[$1]}" "${L2IPB[$1]}" -u -l 64 -b 0 && iperf_end udp "$IPID" "$IPORT"; }
rtcp() { iperf_start "${RTC[$1]}" "${RTS[$1]}" "${RTIP[$1]}" && iperf_end tcp "$IPID" "$IPORT"; }
ntcp() { iperf_start "${NATC[$1]}" "${NATS[$1]}" "${NATIP[$1]}" && iperf_end tcp "$IPID" "$IPORT"; }
tcp2x() {
	local p1 o1 p2 o2 rc1=0 rc2=0 r1 r2
	iperf_start "${L2A[$1]}" "${L2B[$1]}" "${L2IPB[$1]}"
	p1=$IPID o1=$IPORT
	iperf_start "${L2C[$1]}" "${L2D[$1]}" "${L2IPD[$1]}"
	p2=$IPID o2=$IPORT
	wait "$p1" || rc1=$?
	wait "$p2" || rc2=$?
	kill_iperf_server "$work/iperf-$o1.pid"
	kill_iperf_server "$work/iperf-$o2.pid"
	r1=$(iperf_figure tcp "$o1" "$rc1") || return 1
	r2=$(iperf_figure tcp "$o2" "$rc2") || return 1
	awk -v a="$r1" -v b="$r2" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.3f %.4f -\n", x[1] + y[1], x[2] + y[2] }'
}

# rtt NS IP FLAGS -> average round trip in µs. ping prints its average in
# whole µs, too coarse for the kernel's ~2 µs; with -A (the next echo leaves
# when the reply arrives) the run's total time over its count is finer.
# A few lost replies still give a figure; none received (no rtt line) fails.
rtt() {
	local out rc=0
	out=$(timeout --foreground -k 5 60 ip netns exec "$1" ping $3 -q "$2" 2>&1) || rc=$?
	if ! grep -q '^rtt' <<<"$out"; then
		echo "ping exited $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')" >&2
		return 1
	fi
	case "$3" in
	-A*) echo "$out" | awk '/transmitted/ { for (i = 1; i <= NF; i++) if ($i == "time") { sub("ms", "", $(i+1)); printf "%.1f", $(i+1) * 1000 / $1 } }' ;;
	*) echo "$out" | awk -F/ '/^rtt/ { printf "%.1f", $5 * 1000 }' ;;
	esac
}
# flood NS IP: a back-to-back run is over in milliseconds and can land
# bimodally (~3x faster when the pinger and the switch's thread share a
# CPU than when every hop wakes the other vCPU): the median of three runs
# of 10000, for the kernel and uswitch alike (ping gives the total time in
# whole ms: 10000 kernel round trips take ~35 ms, so the figure's grain is
# under 3%).
flood_at() {
	local i v vals=()
	for i in 1 2 3; do
		v=$(rtt "$1" "$2" "-A -c 10000") || return 1
		vals+=("$v")
	done
	printf '%s\n' "${vals[@]}" | sort -g | sed -n 2p | awk '{ print $1, "-", "-" }'
}
flood() { flood_at "${L2A[$1]}" "${L2IPB[$1]}"; }
paced() { rtt "${L2A[$1]}" "${L2IPB[$1]}" "-c 20 -i 0.05" | awk '{ print $1, "-", "-" }'; }
rflood() { flood_at "${RTC[$1]}" "${RTIP[$1]}"; }

# cputicks SETUP: utime + stime of the setup's switch process, in clock
# ticks ("-" for the kernel). Its comm holds no spaces: fields 14 and 15.
TICK=$(getconf CLK_TCK)
cputicks() {
	local pid=${UPID[$1]:-}
	[ -n "$pid" ] || { echo -; return; }
	awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

# The measures, in the table's order: KEY FUNC WHERE (l2, rt, nat: which
# setups have it).
MEASURES="tcp1:tcp:l2 tcp2:tcp2:l2 tcp2x:tcp2x:l2 flood:flood:l2 paced:paced:l2 udp64:udp64:l2 rtcp1:rtcp:rt rflood:rflood:rt ntcp1:ntcp:nat"
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# m RUN KEY FUNC SETUP: appends "RUN KEY SETUP FIGURE WORK LOSS CPU_S" to
# $work/rows (FIGURE "-" when the measure failed; CPU_S "-" for the kernel).
m() {
	local run=$1 key=$2 f=$3 s=$4 out rc=0 t0 t1 cpu=-
	t0=$(cputicks "$s")
	out=$("$f" "$s" 2>"$work/err") || rc=$?
	t1=$(cputicks "$s")
	[ "$t0" != - ] && cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
	if [ "$rc" = 0 ] && [[ $out =~ ^[0-9.]+\ [-0-9.]+\ [-0-9.]+$ ]]; then
		echo "$run $key $s $out $cpu" >>"$work/rows"
	else
		log "run $run: $key ${NAME[$s]} failed (exit $rc): $(tr '\n' ' ' <"$work/err")${out:+ output: $out}"
		echo "$run $key $s - - - -" >>"$work/rows"
	fi
}

# Every run measures each measure for every setup in turn; the setups'
# order rotates by one from run to run. A busy-poll instance is given a
# moment after its turn: its thread keeps spinning for 10 ms after the last
# frame, which would otherwise overlap the next figure.
start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/rows"
read -ra order <<<"$SETUPS"
for run in $(seq "$RUNS"); do
	for spec in $MEASURES; do
		IFS=: read -r key f where <<<"$spec"
		want "$key" || continue
		line=""
		for s in "${order[@]}"; do
			case $where in rt) [ "${RTC[$s]}" = - ] && continue ;; nat) [ "${NATC[$s]}" = - ] && continue ;; esac
			m "$run" "$key" "$f" "$s"
			case $s in k | v) ;; *) sleep 0.2 ;; esac
			line+="  ${NAME[$s]} $(tail -n1 "$work/rows" | cut -d' ' -f4)"
		done
		log "run $run/$RUNS $(printf '%-7s' "$key")$line"
	done
	order=("${order[@]:1}" "${order[0]}")
done
elapsed=$(($(date +%s) - start))

# --- report
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
binver=$("$BIN" version 2>/dev/null | head -n1 | awk '{ print $2 }')
setup_args=()
for s in $SETUPS; do setup_args+=("$s=${NAME[$s]}"); done
{
	echo "# bench/net.sh results"
	echo
	printf '%s, %s, %d cores, kernel %s, RUNS=%s, SECS=%s, LINK=%s, git %s (binary %s); %d s of measures, load average %s at the start, %s at the end\n' \
		"$(date -u +%FT%TZ)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
		"$(nproc)" "$(uname -r)" "$RUNS" "$SECS" "$LINK" "$rev" "${binver:-unknown}" "$elapsed" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
	if [ -r "$HALTPOLL" ]; then
		echo
		if [ -n "${HALTPOLL_NS:-}" ]; then
			echo "guest_halt_poll_ns = $(cat "$HALTPOLL") for this run (HALTPOLL_NS; the machine has $HALTPOLL_OLD)."
		else
			echo "guest_halt_poll_ns = $(cat "$HALTPOLL") (the machine's; see HALTPOLL_NS in bench/net.sh)."
		fi
	fi
	echo
	python3 bench/netreport.py "$work/rows" "${setup_args[@]}"
	echo
	echo "TCP figures are iperf3's receiver side; UDP is iperf3 -u -l 64 -b 0, datagrams the receiver got"
	echo "(sent minus lost) per second, and the share of the sender's datagrams not delivered. ping -A is"
	echo "the median of three runs of 10000 (total time / count). \"-\" is a measure that failed (its"
	echo "error is on stderr)."
	echo "uswitch runs with offload = true and the busy-poll thread (the default; endpoints link = \"$LINK\"),"
	echo "uswitch + latency the same with \`--cpu-latency\` (while its thread spins, /dev/cpu_dma_latency"
	echo "holds 0 µs: the machine's idle CPUs poll instead of halting)."
	if [ -n "${USW_ARGS:-}" ]; then
		echo "Every uswitch instance also ran with \`$USW_ARGS\`."
	fi
	if [ -n "${XFLAGS:-}" ]; then
		echo "uswitch $XFLAGS: the default instance with \`$XFLAGS\` as well."
	fi
	if [ "$EXTRA" = 1 ]; then
		echo "uswitch readers: \`--busy-poll=false\` (a reader goroutine per port); uswitch plain: offload = false"
		echo "and --busy-poll=false."
	fi
	if [ "$OVS" = 1 ]; then
		echo "Open vSwitch ${OVS_VERSION:-?}: ovs-vswitchd with the userspace datapath (datapath_type=netdev),"
		echo "other_config:userspace-tso-enable=true, TAP ports (type=tap) moved into the endpoints' namespaces,"
		echo "the NORMAL (learning switch) flow; L2 only. Its CPU is ovs-vswitchd's."
	else
		echo "OVS=0: Open vSwitch was not run."
	fi
	if [ -n "${ONLY:-}" ]; then
		echo "ONLY=\"$ONLY\": the other measures were not run."
	fi
	if [ -n "${NOTE:-}" ]; then
		echo
		echo "$NOTE"
	fi
} >"$work/results.md"
cat "$work/results.md"

# --- CPU profiles of the default instance (p), one measure each: the
# control API profiles the process for SECS seconds while iperf3 runs.
# profile KEY FUNC TITLE UNIT
profile() {
	local key=$1 f=$2 title=$3 unit=$4 cpid out
	want "$key" || return 0
	curl -s --max-time $((SECS + 30)) --unix-socket "$work/${INST[p]}.sock" -o "$work/$key.pprof" \
		"http://uswitch/debug/pprof/profile?seconds=$SECS" &
	cpid=$!
	out=$("$f" p 2>&1) || true
	wait "$cpid" || true
	{
		echo
		echo "## CPU profile: uswitch (the default), $title (one more measure: ${out%% *} ${unit})"
		echo
		echo '```'
		if [ ! -s "$work/$key.pprof" ] || ! go tool pprof -top -nodecount=15 "$BIN" "$work/$key.pprof" 2>&1; then
			echo "no profile ($(head -c 300 "$work/$key.pprof" 2>/dev/null))"
		fi
		echo '```'
	} >>"$work/results.md"
	sleep 0.2
}
if [ "$PROFILE" = 1 ]; then
	n=$(wc -l <"$work/results.md")
	profile tcp1 tcp "L2 TCP 1 stream" Gbit/s
	profile udp64 udp64 "L2 UDP 64 B" "kpps delivered"
	tail -n +$((n + 1)) "$work/results.md"
fi
cp "$work/results.md" "$RESULTS"
log "wrote $RESULTS"
