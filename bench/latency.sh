#!/bin/sh
# latency.sh: publish-to-delivery latency of Tern's nsqd and NSQ 1.3's, side by side, with
# consumers that identify as go-nsq does by default (bench/nsqlatency), at 1,000 and 10,000
# msgs/s, with one consumer and with ten, at RDY 1 (go-nsq's default MaxInFlight) and 200.
#
# usage: bench/latency.sh TERN_NSQD NSQ_BIN_DIR [DURATION]   (make bench-latency)
set -eu
tern=$1
nsq=$2/nsqd
duration=${3:-10s}
dir=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

start() { # name binary port
	mkdir -p "$dir/$1"
	"$2" --tcp-address="127.0.0.1:$3" --http-address="127.0.0.1:$(($3 + 1))" --data-path="$dir/$1" >"$dir/$1.log" 2>&1 &
	pids="$pids $!"
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$(($3 + 1))/ping" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "latency.sh: $1 did not start; its log:" >&2
	cat "$dir/$1.log" >&2
	exit 1
}
start tern "$tern" 14150
start nsq "$nsq" 14250
go build -o "$dir/nsqlatency" ./bench/nsqlatency
for rdy in 1 200; do
	for consumers in 1 10; do
		for rate in 1000 10000; do
			for server in tern:14150 nsq:14250; do
				printf '%-5s ' "${server%%:*}"
				"$dir/nsqlatency" --nsqd-tcp-address "127.0.0.1:${server#*:}" --rate "$rate" \
					--consumers "$consumers" --rdy "$rdy" --duration "$duration" --topic "lat_${rdy}_${consumers}_${rate}"
			done
		done
	done
done
