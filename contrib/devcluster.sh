#!/usr/bin/env bash
# Runs the cluster of `make dev` from ./bin on this host, for those without Docker:
# nsqlookupd on 4160/4161, then nsqd on 4150/4151 registered with it, then nsqadmin on 4171 over
# the lookupd. Data, logs and pid files go to ./.data. Usage: contrib/devcluster.sh up|down
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

data=.data
mkdir -p "$data"

# name, TCP port to wait for, then the daemon's arguments.
daemons=(
	"nsqlookupd 4160"
	"nsqd 4150 --data-path=$data/nsqd --broadcast-address=127.0.0.1 --lookupd-tcp-address=127.0.0.1:4160"
	"nsqadmin 4171 --lookupd-http-address=127.0.0.1:4161"
)

running() { # name -> pid, if that daemon runs from ./bin
	local pidfile="$data/$1.pid" pid
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "bin/$1" || return 1
	echo "$pid"
}

start() { # name port args...
	local name=$1 port=$2 pid
	shift 2
	if pid=$(running "$name"); then
		echo "$name is already running (pid $pid)"
		return
	fi
	[ "$name" = nsqd ] && mkdir -p "$data/nsqd"
	nohup "./bin/$name" "$@" </dev/null >>"$data/$name.log" 2>&1 &
	pid=$!
	echo "$pid" >"$data/$name.pid"
	for _ in $(seq 100); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$data/$name.pid"
			echo "$name exited at start; the end of $data/$name.log:" >&2
			tail -n 20 "$data/$name.log" >&2
			return 1
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$name is up (pid $pid, TCP port $port); log in $data/$name.log"
			return
		fi
		sleep 0.1 # waiting for a port to open, bounded by the loop
	done
	echo "$name is running (pid $pid) but not yet listening on port $port; see $data/$name.log" >&2
	return 1
}

stop() { # name
	local name=$1 pid
	if ! pid=$(running "$name"); then
		rm -f "$data/$name.pid"
		echo "$name is not running"
		return
	fi
	kill -TERM "$pid"
	for _ in $(seq 300); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$data/$name.pid"
			echo "$name stopped"
			return
		fi
		sleep 0.1 # waiting for a clean shutdown, bounded by the loop
	done
	echo "$name (pid $pid) did not stop within 30s of SIGTERM; see $data/$name.log" >&2
	return 1
}

case "${1:-}" in
up)
	for d in "${daemons[@]}"; do
		# shellcheck disable=SC2086 # the list holds words on purpose
		start $d
	done
	echo "stop the cluster with make dev-down"
	;;
down)
	# Reverse order: nsqd first, so it does not spend its shutdown reconnecting to lookupd.
	for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
		stop "${daemons[$i]%% *}"
	done
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
