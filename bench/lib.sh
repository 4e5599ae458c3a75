# Shell helpers of bench/net.sh and bench/udploss.sh (sourced, not run).
# ME is the sourcing script's name, for messages.

log() { echo "$ME: $*" >&2; }

# need_tools NAME:PACKAGE... installs the Debian/Ubuntu packages of the
# tools missing (apt-get), or names them and exits where there is no apt-get.
need_tools() {
	local tool missing=() policy rc
	for tool in "$@"; do
		command -v "${tool%%:*}" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "${tool%%:*}" >/dev/null ||
			[[ " ${missing[*]} " == *" ${tool##*:} "* ]] || missing+=("${tool##*:}")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	if ! command -v apt-get >/dev/null; then
		log "needs ${missing[*]} (Debian/Ubuntu package names; on Fedora: iperf3 iputils iptables python3 openvswitch): install them and run it again"
		exit 1
	fi
	log "installing ${missing[*]}: apt-get update && apt-get install -y ${missing[*]}"
	# openvswitch-switch's install starts the system's OVS service unless
	# policy-rc.d says no (exit 101): a bench must not leave a switch
	# daemon running in the root namespace.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
	fi
	rc=0
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
	[ -n "$policy" ] && rm -f "$policy"
	[ "$rc" = 0 ] || exit "$rc"
}

# alive PID: running, not exited (a child that exited stays a zombie, which
# kill -0 still finds, until waited for).
alive() {
	local st
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [ "$st" != Z ]
}

# stop_pid PID: SIGTERM, then wait for it (SIGKILL after 20 s). PID is a
# child of this shell, so it stays a zombie, not reused, until waited for.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for i in $(seq 200); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		log "pid $pid did not stop on SIGTERM in 20 s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

# kill_iperf_server PIDFILE: a daemonized iperf3 server of ours (-I PIDFILE)
# that is still running, e.g. because its client never connected.
kill_iperf_server() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	rm -f "$1"
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = iperf3 ] && kill -TERM "$pid" 2>/dev/null
	return 0
}

# usw_run: starts `uswitch run` ($BIN) on $work/cfg.toml with its control
# socket at $work/s.sock and any further arguments as run flags, sets PID,
# and waits until it says ready (1 when it does not).
usw_run() {
	local i
	"$BIN" run --config "$work/cfg.toml" --control "$work/s.sock" "$@" >/dev/null 2>"$work/err" &
	PID=$!
	for i in $(seq 200); do
		grep -q msg=ready "$work/err" && return 0
		alive "$PID" || break
		sleep 0.1
	done
	log "uswitch did not become ready:"
	cat "$work/err" >&2
	return 1
}

# usw_stop: stops the instance usw_run started and removes what it left
# (instance $P); for cleanup traps.
usw_stop() {
	[ -n "${PID:-}" ] && stop_pid "$PID"
	PID=""
	[ -f "$work/cfg.toml" ] && "$BIN" down --config "$work/cfg.toml" >/dev/null 2>&1
	rm -f "/run/uswitch/$P.lock"
}

# lan_pair SUBNET [LINK]: the config lines of network "lan" on SUBNET with
# two endpoints $P-a and $P-b (link LINK when given), for a script's
# cfg.toml after its [defaults].
lan_pair() {
	printf '[[network]]\nname = "lan"\nsubnet = "%s"\n' "$1"
	local e
	for e in a b; do
		printf '[[endpoint]]\nname = "%s"\nnetwork = "lan"\n' "$P-$e"
		[ -z "${2:-}" ] || printf 'link = "%s"\n' "$2"
	done
}

# usw_lan SUBNET LINK [ARGS...]: one instance with offloads on, network
# "lan" on SUBNET with endpoints $P-a (.2) and $P-b (.3) (link LINK, empty
# for TAPs), started with `uswitch run ARGS` and checked with two pings.
usw_lan() {
	local subnet=$1 link=$2
	shift 2
	printf 'name = "%s"\n[defaults]\noffload = true\n' "$P" >"$work/cfg.toml"
	lan_pair "$subnet" "$link" >>"$work/cfg.toml"
	usw_run "$@"
	ip netns exec "$P-a" ping -c 2 -i 0.2 -W 2 -q "${subnet%.0/*}.3" >/dev/null
}

# on_exit: runs the script's cleanup function on exit, whichever way the
# script ends (an interrupt or SIGTERM exits through it too).
on_exit() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
