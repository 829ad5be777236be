#!/bin/sh
# latency.sh: publish-to-delivery latency of Tern's nsqd and NSQ 1.3's, side by side, with
# consumers that identify as go-nsq does by default (bench/nsqlatency), at 1,000 and 10,000
# msgs/s, with one consumer and with ten, at RDY 1 (go-nsq's default MaxInFlight) and 200.
#
# With "levels" it measures instead at 10 %, 50 % and 90 % of each daemon's maximum rate, with
# one consumer and with ten at RDY 200: the maximum is the delivered rate of a run asked for
# far more than either daemon sustains.
#
# usage: bench/latency.sh TERN_NSQD NSQ_BIN_DIR [DURATION [levels]]   (make bench-latency)
set -eu
tern=$1
nsq=$2/nsqd
duration=${3:-10s}
mode=${4:-}
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
if [ "$mode" = levels ]; then
	for consumers in 1 10; do
		for server in tern:14150 nsq:14250; do
			port=${server#*:}
			line=$("$dir/nsqlatency" --nsqd-tcp-address "127.0.0.1:$port" --rate 1000000 --consumers "$consumers" \
				--rdy 200 --duration 2s --warmup 500ms --topic "max_${consumers}")
			max=$(echo "$line" | sed -n 's/.*delivered \([0-9]*\)\/s.*/\1/p')
			printf '%-5s max %s/s with %s consumer(s)\n' "${server%%:*}" "$max" "$consumers"
			for pct in 10 50 90; do
				printf '%-5s %3s%% ' "${server%%:*}" "$pct"
				"$dir/nsqlatency" --nsqd-tcp-address "127.0.0.1:$port" --rate $((max * pct / 100)) \
					--consumers "$consumers" --rdy 200 --duration "$duration" --topic "lvl_${consumers}_${pct}"
			done
		done
	done
	exit 0
fi
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
