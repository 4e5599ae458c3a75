#!/usr/bin/env bash
# Side-by-side, in the same run with the same tools, the kernel, Open
# vSwitch's userspace datapath and four uswitch instances: "uswitch offload" (offload = true, TAPs with
# IFF_VNET_HDR, a reader goroutine per port: --busy-poll=false), "uswitch
# busy-poll" (the same with the busy-poll thread, the default), "uswitch
# busy-poll + latency" (the same with --cpu-latency: the thread holds a CPU
# latency request of 0 while it spins, so idle CPUs poll instead of
# halting) and "uswitch plain" (offload = false, reader goroutines).
#
#   - L2: two namespaces on a kernel veth+bridge, on an Open vSwitch
#     bridge and on each instance's switch: TCP 1 stream, TCP 2 streams,
#     ping -A and paced ping round trip, UDP 64-byte packets delivered per
#     second;
#   - routed: two namespaces on two subnets through a kernel router (a
#     namespace with ip_forward) and through each instance's router: TCP 1
#     stream and ping -A;
#   - masquerade: a namespace reaching a "host" namespace through the
#     kernel's iptables MASQUERADE in a router namespace, and through each
#     instance's uplink: TCP 1 stream.
#
# Prints a markdown table with uswitch's ratio to the kernel for each figure
# and writes it to bench/RESULTS.md (overwritten each run). With PROFILE=1
# (the default) every instance runs with --cpuprofile, and the top of each
# whole-run profile is appended to RESULTS.md once they have stopped.
#
# Open vSwitch (L2 only) is ovs-vswitchd with the userspace datapath
# (datapath_type=netdev) and userspace TSO (other_config:
# userspace-tso-enable=true), its ports TAPs (type=tap) that it opens with
# vnet headers and that the script then moves into the two endpoint
# namespaces, as uswitch's are. ovsdb-server and ovs-vswitchd are this
# script's own: started inside a namespace of its own (so the bridge's
# internal port and OVS's TAPs never appear in the root namespace), with
# their database, sockets, pid and log files in the run's temporary
# directory, and stopped by the PIDs it started; the system's Open vSwitch
# service, if any, is not used or touched. OVS=0 leaves it out.
#
# Knobs: SECS (seconds per iperf3 test, default 5), PROFILE (1/0), BIN, OVS,
# LINK (tap, the default, or veth: the uswitch instances' endpoints are
# veth pairs, uswitch reading its side with a packet socket, instead of TAPs),
# ONLY (a space-separated list of measure keys to run, e.g. "tcp1 flood";
# the others are reported as "-"; the keys: tcp1 tcp2 flood paced udp64
# rtcp1 rflood ntcp1), NOTE (a line written under the table, e.g. what
# else loaded the machine), HALTPOLL_NS (below).
#
# A guest whose cpuidle driver is haltpoll halts an idle vCPU after
# polling for up to guest_halt_poll_ns (the kernel's default is 200000; a
# machine may set 0), and waking a halted vCPU costs a VM exit. The kernel
# bridge answers a ping inside the pinger's own system call and never waits
# for one; every hop through uswitch wakes a thread, often on the other
# vCPU. RESULTS.md records the value the run had. HALTPOLL_NS=N sets it for
# the run (all setups alike) and restores the old value on exit.
#
# Needs root, iperf3, ping, iptables, python3 (to read iperf3's JSON) and,
# unless OVS=0, ovs-vswitchd, ovsdb-server, ovsdb-tool and ovs-vsctl:
# installed with apt-get when missing (openvswitch-switch, with a
# policy-rc.d that keeps the package from starting its service for the
# install), or named for you to install; and go
# for the profile report. Everything it makes is
# named ub<pid>*, lives in namespaces it creates (the kernel bridge and
# router too, so the root namespace's links, routes, iptables and sysctls
# are not touched), and is removed on exit, whichever way the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=bench/net.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root (namespaces)"; exit 1; }
OVS=${OVS:-1}
# The tools, and the Debian/Ubuntu package of each.
tools=(iperf3:iperf3 ping:iputils-ping iptables:iptables python3:python3)
[ "$OVS" = 1 ] && tools+=(ovs-vswitchd:openvswitch-switch ovsdb-server:openvswitch-switch
	ovsdb-tool:openvswitch-common ovs-vsctl:openvswitch-common)
need_tools "${tools[@]}"
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
SECS=${SECS:-5}
PROFILE=${PROFILE:-1}
LINK=${LINK:-tap}
case $LINK in tap | veth) ;; *) log "LINK is tap or veth"; exit 1 ;; esac
RESULTS=${RESULTS:-bench/RESULTS.md}
P=ub$(($$ % 10000))
PLAIN=$P      # instance name (and prefix of its endpoints) of uswitch plain
OFFL=${P}o    # ... of uswitch offload
POLL=${P}p    # ... of uswitch busy-poll
LAT=${P}l     # ... and of uswitch busy-poll with --cpu-latency
PLAIN_PID=""
OFFL_PID=""
POLL_PID=""
LAT_PID=""
OVSDB_PID=""
VSWITCHD_PID=""
work=$(mktemp -d)
KERNEL_NS="$P-kbr $P-ka $P-kb $P-krt $P-kra $P-krb $P-knr $P-kna $P-knh"
OVS_NS="$P-vs $P-va $P-vb"


HALTPOLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALTPOLL_OLD=""
cleanup() {
	set +e
	trap '' INT TERM
	[ -n "$HALTPOLL_OLD" ] && echo "$HALTPOLL_OLD" >"$HALTPOLL"
	[ -n "$OFFL_PID" ] && stop_pid "$OFFL_PID"
	[ -n "$POLL_PID" ] && stop_pid "$POLL_PID"
	[ -n "$LAT_PID" ] && stop_pid "$LAT_PID"
	[ -n "$PLAIN_PID" ] && stop_pid "$PLAIN_PID"
	OFFL_PID="" POLL_PID="" LAT_PID="" PLAIN_PID=""
	[ -n "$VSWITCHD_PID" ] && stop_pid "$VSWITCHD_PID"
	[ -n "$OVSDB_PID" ] && stop_pid "$OVSDB_PID"
	VSWITCHD_PID="" OVSDB_PID=""
	for f in "$work"/iperf-*.pid; do [ -e "$f" ] && kill_iperf_server "$f"; done
	for ns in $KERNEL_NS $OVS_NS; do ip netns del "$ns" 2>/dev/null; done
	for name in "$OFFL" "$POLL" "$LAT" "$PLAIN"; do
		[ -f "$work/$name.toml" ] || continue
		"$BIN" down --config "$work/$name.toml" >/dev/null 2>&1 || log "uswitch down $name failed"
		# A clean exit removes its lock file, one that was killed does not;
		# ours are named after this script's pid and no one else uses them.
		rm -f "/run/uswitch/$name.lock"
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${HALTPOLL_NS:-}" ]; then
	[ -w "$HALTPOLL" ] || { log "HALTPOLL_NS: no $HALTPOLL on this machine"; exit 1; }
	HALTPOLL_OLD=$(cat "$HALTPOLL")
	echo "$HALTPOLL_NS" >"$HALTPOLL"
fi

# --- kernel: veth pairs into a bridge that lives in its own namespace
ip netns add $P-kbr
ip -n $P-kbr link add br0 type bridge
ip -n $P-kbr link set br0 up
i=1
for side in ka kb; do
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
# and two TAP ports moved into $P-va and $P-vb (10.75.0.0/24). ip netns exec
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
	for s in va vb; do
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
fi

# --- uswitch: the same endpoints on TAPs, switched, routed and masqueraded.
# usw_config NAME PREFIX OFFLOAD NET: endpoints are namespaces PREFIX-a,
# PREFIX-b (L2), PREFIX-ra, PREFIX-rb (routed), PREFIX-m (masqueraded) and
# the uplink's host side PREFIX-h; subnets are 10.NET-x.*:
#   10.NET.0.0/24 L2, 10.(NET-2).1-2.0/24 routed, 10.(NET-4).1.0/24 and
#   10.(NET-4).9.0/30 masquerade.
usw_config() {
	local name=$1 pfx=$2 offload=$3 l2=$4 rt=$(($4 - 2)) nat=$(($4 - 4))
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
[[endpoint]]
name = "$pfx-m"
network = "m"
link = "$LINK"
[[network]]
name = "lan"
subnet = "10.$l2.0.0/24"
[[endpoint]]
name = "$pfx-a"
network = "lan"
link = "$LINK"
[[endpoint]]
name = "$pfx-b"
network = "lan"
link = "$LINK"
[[network]]
name = "r1"
subnet = "10.$rt.1.0/24"
isolate = false
[[network]]
name = "r2"
subnet = "10.$rt.2.0/24"
isolate = false
[[endpoint]]
name = "$pfx-ra"
network = "r1"
link = "$LINK"
[[endpoint]]
name = "$pfx-rb"
network = "r2"
link = "$LINK"
TOML
}
# plain: 10.98 L2, 10.96 routed, 10.94 masquerade (as before);
# offload: 10.93 L2, 10.91 routed, 10.89 masquerade;
# busy-poll: 10.87 L2, 10.85 routed, 10.83 masquerade;
# busy-poll + latency: 10.81 L2, 10.79 routed, 10.77 masquerade.
# Kernel: 10.99, 10.97, 10.95.
usw_config "$PLAIN" "$P-u" false 98 >"$work/$PLAIN.toml"
usw_config "$OFFL" "$P-o" true 93 >"$work/$OFFL.toml"
usw_config "$POLL" "$P-p" true 87 >"$work/$POLL.toml"
usw_config "$LAT" "$P-l" true 81 >"$work/$LAT.toml"

# usw_start NAME [run flags...] -> starts the instance in the background;
# sets LAST_PID.
usw_start() {
	local name=$1 prof=()
	shift
	[ "$PROFILE" = 1 ] && prof=(--cpuprofile "$work/$name.pprof")
	"$BIN" run --config "$work/$name.toml" --control "$work/$name.sock" "${prof[@]}" "$@" \
		>"$work/$name.out" 2>"$work/$name.err" &
	LAST_PID=$!
}
usw_ready() {
	local name=$1 pid=$2 i
	for i in $(seq 200); do
		grep -q 'msg=ready' "$work/$name.err" && return 0
		alive "$pid" || break
		sleep 0.1
	done
	log "uswitch instance $name did not become ready:"
	cat "$work/$name.err" >&2
	return 1
}
usw_start "$PLAIN" --busy-poll=false
PLAIN_PID=$LAST_PID
usw_start "$OFFL" --busy-poll=false
OFFL_PID=$LAST_PID
usw_start "$POLL" --busy-poll --cpu-latency=false
POLL_PID=$LAST_PID
usw_start "$LAT" --busy-poll --cpu-latency
LAT_PID=$LAST_PID
usw_ready "$PLAIN" "$PLAIN_PID"
usw_ready "$OFFL" "$OFFL_PID"
usw_ready "$POLL" "$POLL_PID"
usw_ready "$LAT" "$LAT_PID"

# --- measures. Each runs under a timeout; a failure prints why and records
# "-" instead of stopping the run. Every iperf3 test gets its own port and
# server pid file, and its server is killed if it outlived the test.
port=5200
declare -A R

# iperf NS_CLIENT NS_SERVER IP KIND [iperf3 client args...] -> the figure:
# KIND tcp: receiver Gbit/s (all streams); udp: receiver's delivered kpps.
iperf() {
	local c=$1 s=$2 ip=$3 kind=$4 i rc=0
	shift 4
	local pidf=$work/iperf-$port.pid json=$work/iperf-$port.json
	ip netns exec "$s" iperf3 -s -1 -D -B "$ip" -p "$port" -I "$pidf" >/dev/null
	for i in $(seq 50); do
		ip netns exec "$s" ss -Htln "sport = :$port" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	timeout --foreground -k 5 $((SECS + 30)) \
		ip netns exec "$c" iperf3 -c "$ip" -p "$port" -t "$SECS" --connect-timeout 3000 -J "$@" >"$json" || rc=$?
	kill_iperf_server "$pidf"
	python3 - "$json" "$kind" "$rc" <<'PY'
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
    print("%.2f" % (r["bits_per_second"] / 1e9))
else:
    secs = r["seconds"]
    if secs <= 0:
        sys.exit("iperf3: receiver measured 0 seconds")
    print("%.1f" % ((r["packets"] - r["lost_packets"]) / secs / 1e3))
PY
}
tcp() { iperf "$1" "$2" "$3" tcp; }
tcp2() { iperf "$1" "$2" "$3" tcp -P 2; }
udp64() { iperf "$1" "$2" "$3" udp -u -l 64 -b 0; }

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
# flood/paced NS_CLIENT NS_SERVER IP (the server's namespace is unused).
# A back-to-back run is over in milliseconds and can land bimodally: ~3x
# faster when the pinger and the switch's thread share a CPU than when
# every hop wakes the other vCPU. flood reports the median of five runs of
# 10000, for the kernel and uswitch alike (ping gives the total time in
# whole ms: 10000 kernel round trips take ~35 ms, so the figure's grain is
# under 3%).
flood() {
	local i v vals=()
	for i in 1 2 3 4 5; do
		v=$(rtt "$1" "$3" "-A -c 10000") || return 1
		vals+=("$v")
	done
	printf '%s\n' "${vals[@]}" | sort -g | sed -n 3p
}
paced() { rtt "$1" "$3" "-c 20 -i 0.05"; }

# m KEY FUNC ARGS... -> R[KEY] is the figure FUNC prints, or "-".
m() {
	local key=$1 out rc=0
	shift
	port=$((port + 1))
	out=$("$@" 2>"$work/err") || rc=$?
	if [ "$rc" = 0 ] && [[ $out =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
		R[$key]=$out
	else
		log "$key failed (exit $rc: $*): $(tr '\n' ' ' <"$work/err")${out:+ output: $out}"
		R[$key]="-"
	fi
}

# Each measure runs for the kernel, Open vSwitch, uswitch offload, uswitch
# plain, uswitch busy-poll and uswitch busy-poll + latency in turn, so
# background load on
# a busy machine spreads over all of them. The busy-poll instances go last
# and each is given a moment after its turn: its thread keeps spinning (at
# idle priority, and with --cpu-latency holding the latency request) for
# 10 ms after the last frame, which would otherwise overlap the next figure.
# measure KEY FUNC  then CLIENT SERVER IP for the kernel, Open vSwitch,
# offload, plain, busy-poll and busy-poll + latency; a setup whose CLIENT
# is "-" (OVS for routed and masquerade, or OVS=0) is not measured.
SETUPS="k v o u p l"
measure() {
	local key=$1 f=$2 s
	if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $key "* ]]; then
		return 0
	fi
	shift 2
	for s in $SETUPS; do
		if [ "$1" != - ]; then
			m "$key.$s" "$f" "$1" "$2" "$3"
			case $s in p | l) sleep 0.2 ;; esac
		fi
		shift 3
	done
	log "$(printf '%-10s kernel %8s  ovs %8s  offload %8s  plain %8s  busy-poll %8s  +latency %8s' "$key" "${R[$key.k]:--}" "${R[$key.v]:--}" "${R[$key.o]:--}" "${R[$key.u]:--}" "${R[$key.p]:--}" "${R[$key.l]:--}")"
}
# The six setups' endpoints (in SETUPS' order): L2, routed, masquerade
# (client, server, IP).
OVS_L2="$P-va $P-vb 10.75.0.3"
[ "$OVS" = 1 ] || OVS_L2="- - -"
L2="$P-ka $P-kb 10.99.0.3  $OVS_L2  $P-o-a $P-o-b 10.93.0.3  $P-u-a $P-u-b 10.98.0.3  $P-p-a $P-p-b 10.87.0.3  $P-l-a $P-l-b 10.81.0.3"
RT="$P-kra $P-krb 10.97.2.2  - - -  $P-o-ra $P-o-rb 10.91.2.2  $P-u-ra $P-u-rb 10.96.2.2  $P-p-ra $P-p-rb 10.85.2.2  $P-l-ra $P-l-rb 10.79.2.2"
NAT="$P-kna $P-knh 10.95.9.2  - - -  $P-o-m $P-o-h 10.89.9.2  $P-u-m $P-u-h 10.94.9.2  $P-p-m $P-p-h 10.83.9.2  $P-l-m $P-l-h 10.77.9.2"
# Warm-up: ARP, FDB, conntrack; tells early when a path does not work.
for set in "$L2" "$RT" "$NAT"; do
	set -- $set
	while [ $# -ge 3 ]; do
		[ "$1" = - ] || ip netns exec "$1" ping -c 3 -i 0.2 -W 2 -q "$3" >/dev/null || log "warm-up ping $1 -> $3 failed"
		shift 3
	done
done

# shellcheck disable=SC2086 # the endpoint lists split on purpose
{
	measure tcp1 tcp $L2
	measure tcp2 tcp2 $L2
	measure flood flood $L2
	measure paced paced $L2
	measure udp64 udp64 $L2
	measure rtcp1 tcp $RT
	measure rflood flood $RT
	measure ntcp1 tcp $NAT
}

# --- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'; }
row() {
	local k=${R[$2.k]:--} v=${R[$2.v]:--} o=${R[$2.o]:--} p=${R[$2.p]:--} l=${R[$2.l]:--} u=${R[$2.u]:--}
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$k" \
		"$v" "$(ratio "$v" "$k")" "$o" "$(ratio "$o" "$k")" \
		"$p" "$(ratio "$p" "$k")" "$(ratio "$p" "$v")" "$l" "$(ratio "$l" "$k")" "$u" "$(ratio "$u" "$k")"
}
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
binver=$("$BIN" version 2>/dev/null | head -n1 | awk '{ print $2 }')
{
	echo "# bench/net.sh results"
	echo
	printf '%s, %s, %d cores, kernel %s, SECS=%s, git %s (binary %s)\n' \
		"$(date -u +%FT%TZ)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
		"$(nproc)" "$(uname -r)" "$SECS" "$rev" "${binver:-unknown}"
	echo
	echo "uswitch's endpoints: LINK=$LINK (link = \"$LINK\" on every endpoint)."
	if [ -r "$HALTPOLL" ]; then
		echo
		if [ -n "${HALTPOLL_NS:-}" ]; then
			echo "guest_halt_poll_ns = $(cat "$HALTPOLL") for this run (HALTPOLL_NS; the machine has $HALTPOLL_OLD)."
		else
			echo "guest_halt_poll_ns = $(cat "$HALTPOLL") (the machine's; see HALTPOLL_NS in bench/net.sh)."
		fi
	fi
	echo
	echo "| measure | kernel | Open vSwitch | ratio | uswitch offload | ratio | uswitch offload, busy-poll | ratio | vs OVS | busy-poll + CPU latency request | ratio | uswitch plain | ratio |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	row "L2 TCP 1 stream (Gbit/s)" tcp1
	row "L2 TCP 2 streams (Gbit/s)" tcp2
	row "L2 RTT ping -A (µs)" flood
	row "L2 RTT ping -i 0.05 (µs)" paced
	row "L2 UDP 64 B delivered (kpps)" udp64
	row "routed TCP 1 stream (Gbit/s)" rtcp1
	row "routed RTT ping -A (µs)" rflood
	row "masquerade TCP 1 stream (Gbit/s)" ntcp1
	echo
	echo "ratio = uswitch (or OVS) / kernel, vs OVS = uswitch busy-poll (the default) / Open vSwitch: higher"
	echo "is better for Gbit/s and kpps, lower is better for RTT (µs)."
	echo "TCP figures are iperf3's receiver side; UDP is iperf3 -u -l 64 -b 0, datagrams the receiver got"
	echo "(sent minus lost) per second. ping -A is the median of five runs of 10000 (total time / count)."
	echo "\"-\" is a measure that failed (its error is on stderr)."
	echo "uswitch offload runs with offload = true and \`uswitch run --busy-poll=false\` (a reader goroutine"
	echo "per port), busy-poll the same with the busy-poll thread (the default), busy-poll + CPU latency"
	echo "request the same with \`--cpu-latency\` (while its thread spins, /dev/cpu_dma_latency holds 0 µs:"
	echo "the machine's idle CPUs poll instead of halting), uswitch plain with offload = false and"
	echo "--busy-poll=false, all at once."
	if [ "$OVS" = 1 ]; then
		echo "Open vSwitch ${OVS_VERSION:-?}: ovs-vswitchd with the userspace datapath (datapath_type=netdev),"
		echo "other_config:userspace-tso-enable=true, TAP ports (type=tap) moved into the endpoints' namespaces,"
		echo "the NORMAL (learning switch) flow; L2 only (\"-\" for routed and masquerade)."
	else
		echo "OVS=0: Open vSwitch was not run."
	fi
	if [ -n "${ONLY:-}" ]; then
		echo "ONLY=\"$ONLY\": the other measures were not run."
	fi
	if [ "$PROFILE" = 1 ]; then
		echo "PROFILE=1: every instance ran with --cpuprofile (a few % of overhead on the uswitch figures)."
	fi
	if [ -n "${NOTE:-}" ]; then
		echo
		echo "$NOTE"
	fi
} >"$work/results.md"
cat "$work/results.md"

# --- CPU profiles: stop each instance so it writes its profile, then append
# the top of it.
if [ "$PROFILE" = 1 ]; then
	stop_pid "$OFFL_PID"
	OFFL_PID=""
	stop_pid "$POLL_PID"
	POLL_PID=""
	stop_pid "$LAT_PID"
	LAT_PID=""
	stop_pid "$PLAIN_PID"
	PLAIN_PID=""
	for name in "$OFFL" "$POLL" "$LAT" "$PLAIN"; do
		case $name in "$OFFL") what=offload ;; "$POLL") what=busy-poll ;; "$LAT") what="busy-poll + CPU latency request" ;; *) what=plain ;; esac
		{
			echo
			echo "## CPU profile (uswitch $what instance, whole run)"
			echo
			echo '```'
			if [ ! -s "$work/$name.pprof" ]; then
				echo "no profile written ($work/$name.pprof is missing or empty)"
			elif ! go tool pprof -top -nodecount=15 "$BIN" "$work/$name.pprof" 2>&1; then
				echo "go tool pprof failed"
			fi
			echo '```'
		} >"$work/prof-$name.md"
		cat "$work/prof-$name.md" >>"$work/results.md"
		cat "$work/prof-$name.md"
	done
fi
cp "$work/results.md" "$RESULTS"
log "wrote $RESULTS"
