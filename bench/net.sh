#!/usr/bin/env bash
# Side-by-side, in the same run with the same tools: two namespaces talking
# through a kernel veth+bridge and through uswitch's switch; two namespaces
# on two subnets talking through a kernel router (a namespace with
# ip_forward) and through uswitch's router; a namespace reaching a "host"
# through masquerade: the kernel's iptables MASQUERADE in a router
# namespace, and uswitch's uplink. Prints each figure and uswitch's ratio to
# the kernel's.
#
# Needs root, iperf3 and ping (installed when missing). Everything it makes
# is named ub<pid>-*, lives in namespaces it creates (the kernel bridge too,
# so the root namespace is not touched), and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root (namespaces)"; exit 1; }
if ! command -v iperf3 >/dev/null || ! command -v ping >/dev/null || ! command -v iptables >/dev/null; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 iputils-ping iptables >/dev/null
fi
BIN=${BIN:-bin/uswitch}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/uswitch
SECS=${SECS:-5}
P=ub$(($$ % 10000))
USW_PID=""
work=$(mktemp -d)

cleanup() {
	set +e
	[ -n "$USW_PID" ] && kill -TERM "$USW_PID" 2>/dev/null && wait "$USW_PID" 2>/dev/null
	for ns in $P-kbr $P-ka $P-kb $P-krt $P-kra $P-krb $P-knr $P-kna $P-knh; do ip netns del "$ns" 2>/dev/null; done
	"$BIN" down --config "$work/net.toml" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

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

# --- uswitch: the same endpoints on TAPs, switched, routed and masqueraded
cat >"$work/net.toml" <<TOML
name = "$P"
[defaults]
offload = false
[uplink]
address = "10.94.9.1/30"
host_address = "10.94.9.2/30"
netns = "$P-uh"
routes = false
[[network]]
name = "m"
subnet = "10.94.1.0/24"
[[endpoint]]
name = "$P-um"
network = "m"
[[network]]
name = "lan"
subnet = "10.98.0.0/24"
[[endpoint]]
name = "$P-ua"
network = "lan"
[[endpoint]]
name = "$P-ub"
network = "lan"
[[network]]
name = "r1"
subnet = "10.96.1.0/24"
isolate = false
[[network]]
name = "r2"
subnet = "10.96.2.0/24"
isolate = false
[[endpoint]]
name = "$P-ura"
network = "r1"
[[endpoint]]
name = "$P-urb"
network = "r2"
TOML
"$BIN" run --config "$work/net.toml" >"$work/run.out" 2>"$work/run.err" &
USW_PID=$!
for _ in $(seq 100); do grep -q 'msg=ready' "$work/run.err" && break; sleep 0.1; done
grep -q 'msg=ready' "$work/run.err" || { cat "$work/run.err"; exit 1; }

# tcp NS_CLIENT NS_SERVER IP -> Gbit/s received
tcp() {
	ip netns exec "$2" iperf3 -s -1 -D -B "$3" -p 5201 >/dev/null
	sleep 0.3
	ip netns exec "$1" iperf3 -c "$3" -p 5201 -t "$SECS" -f m |
		awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") printf "%.2f", $(i-1) / 1000 }'
}
# rtt NS IP FLAGS -> average round trip in µs. ping prints its average in
# whole µs, too coarse for the kernel's ~2 µs; with -A (the next echo leaves
# when the reply arrives) the run's total time over its count is finer.
rtt() {
	case "$3" in
	-A*) ip netns exec "$1" ping $3 -q "$2" | awk '/transmitted/ { for (i = 1; i <= NF; i++) if ($i == "time") { sub("ms", "", $(i+1)); printf "%.1f", $(i+1) * 1000 / $1 } }' ;;
	*) ip netns exec "$1" ping $3 -q "$2" | awk -F/ '/^rtt/ { printf "%.1f", $5 * 1000 }' ;;
	esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

ip netns exec $P-ka ping -c 3 -i 0.2 -q 10.99.0.3 >/dev/null
ip netns exec $P-ua ping -c 3 -i 0.2 -q 10.98.0.3 >/dev/null
ip netns exec $P-kra ping -c 3 -i 0.2 -q 10.97.2.2 >/dev/null
ip netns exec $P-ura ping -c 3 -i 0.2 -q 10.96.2.2 >/dev/null
ip netns exec $P-kna ping -c 3 -i 0.2 -q 10.95.9.2 >/dev/null
ip netns exec $P-um ping -c 3 -i 0.2 -q 10.94.9.2 >/dev/null

k_tcp=$(tcp $P-ka $P-kb 10.99.0.3)
u_tcp=$(tcp $P-ua $P-ub 10.98.0.3)
k_flood=$(rtt $P-ka 10.99.0.3 "-A -c 2000")
u_flood=$(rtt $P-ua 10.98.0.3 "-A -c 2000")
k_paced=$(rtt $P-ka 10.99.0.3 "-c 20 -i 0.05")
u_paced=$(rtt $P-ua 10.98.0.3 "-c 20 -i 0.05")
kr_tcp=$(tcp $P-kra $P-krb 10.97.2.2)
ur_tcp=$(tcp $P-ura $P-urb 10.96.2.2)
kn_tcp=$(tcp $P-kna $P-knh 10.95.9.2)
un_tcp=$(tcp $P-um $P-uh 10.94.9.2)
kr_flood=$(rtt $P-kra 10.97.2.2 "-A -c 2000")
ur_flood=$(rtt $P-ura 10.96.2.2 "-A -c 2000")

printf '%s, %s, %d cores, kernel %s\n\n' "$(date -u +%FT%TZ)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" "$(uname -r)"
printf '%-28s %12s %12s %8s\n' "measure" "kernel" "uswitch" "ratio"
printf '%-28s %12s %12s %8s\n' "TCP 1 stream (Gbit/s)" "$k_tcp" "$u_tcp" "$(ratio "$u_tcp" "$k_tcp")"
printf '%-28s %12s %12s %8s\n' "RTT ping -A (us)" "$k_flood" "$u_flood" "$(ratio "$u_flood" "$k_flood")"
printf '%-28s %12s %12s %8s\n' "RTT ping paced (us)" "$k_paced" "$u_paced" "$(ratio "$u_paced" "$k_paced")"
printf '%-28s %12s %12s %8s\n' "routed TCP (Gbit/s)" "$kr_tcp" "$ur_tcp" "$(ratio "$ur_tcp" "$kr_tcp")"
printf '%-28s %12s %12s %8s\n' "routed RTT ping -A (us)" "$kr_flood" "$ur_flood" "$(ratio "$ur_flood" "$kr_flood")"
printf '%-28s %12s %12s %8s\n' "masquerade TCP (Gbit/s)" "$kn_tcp" "$un_tcp" "$(ratio "$un_tcp" "$kn_tcp")"
