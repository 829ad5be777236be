#!/usr/bin/env bash
# Runs the docker compose cluster of docker-compose.yml for make up, down, logs and examples,
# with `docker compose` (v2) when the Docker CLI has it and `docker-compose` (v1) otherwise.
# Usage: contrib/compose.sh up|down|purge|logs|examples
#   up        build the image from ./bin (make build first), start the cluster, wait until
#             every daemon's healthcheck passes, and print where everything is
#   down      stop the cluster (SIGTERM, 30s grace) and remove its containers and network;
#             nsqd's data stays in its named volumes for the next up
#   purge     down, and remove the data volumes too
#   logs      follow the cluster's logs
#   examples  start the example publisher and consumers (the "examples" profile) as well
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! docker info >/dev/null 2>&1; then
	echo "no Docker engine answers (docker info failed)." >&2
	echo "Without Docker, 'make dev' runs the same daemons from ./bin on this host." >&2
	exit 1
fi
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null; then
	compose=(docker-compose)
else
	echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
	exit 1
fi

daemons=(nsqlookupd1 nsqlookupd2 nsqd1 nsqd2 nsqadmin)

# wait_healthy: poll every daemon's container health until all are healthy, for up to 90s.
wait_healthy() {
	local deadline=$((SECONDS + 90)) svc id status pending
	while :; do
		pending=()
		for svc in "${daemons[@]}"; do
			id="$("${compose[@]}" ps -q "$svc")"
			status="$( [ -n "$id" ] && docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null || echo missing)"
			[ "$status" = healthy ] || pending+=("$svc:$status")
		done
		if ((${#pending[@]} == 0)); then
			return 0
		fi
		if ((SECONDS >= deadline)); then
			echo "not healthy after 90s: ${pending[*]}; their logs:" >&2
			"${compose[@]}" logs --tail=20 "${daemons[@]}" >&2
			return 1
		fi
		sleep 1 # polling the healthchecks, bounded by the deadline
	done
}

case "${1:-}" in
up)
	"${compose[@]}" build --quiet net nsqd1
	net_before="$("${compose[@]}" ps -q net)"
	"${compose[@]}" up -d
	# The daemons live in net's network namespace. Compose recreates net when its image or
	# settings change (TERN_BIND, say) but not the containers that joined it, which would keep
	# running in the old, unreachable namespace: recreate them too.
	if [ -n "$net_before" ] && [ "$net_before" != "$("${compose[@]}" ps -q net)" ]; then
		echo "net was recreated: recreating the containers in its network namespace"
		# shellcheck disable=SC2046 # one word per service, on purpose
		"${compose[@]}" up -d --force-recreate --no-deps $("${compose[@]}" ps --services --filter status=running | grep -vx net)
	fi
	# Each build of new binaries leaves the previous image untagged, and unused once the
	# containers are recreated: remove those of Tern's.
	docker image prune --force --filter label=org.ternmq.image >/dev/null
	wait_healthy
	cat <<-MSG
		The cluster is up (${compose[*]}; every daemon healthy):
		  nsqd1       TCP 127.0.0.1:${TERN_NSQD1_TCP_PORT:-4150}  HTTP http://127.0.0.1:${TERN_NSQD1_HTTP_PORT:-4151}
		  nsqd2       TCP 127.0.0.1:${TERN_NSQD2_TCP_PORT:-4250}  HTTP http://127.0.0.1:${TERN_NSQD2_HTTP_PORT:-4251}
		  nsqlookupd  HTTP http://127.0.0.1:${TERN_LOOKUPD1_HTTP_PORT:-4161} and http://127.0.0.1:${TERN_LOOKUPD2_HTTP_PORT:-4261}
		  nsqadmin    http://127.0.0.1:${TERN_ADMIN_HTTP_PORT:-4171}
		Publish:  curl -d hello 'http://127.0.0.1:${TERN_NSQD1_HTTP_PORT:-4151}/pub?topic=t'
		Logs: make logs.  Examples: make examples.  Stop: make down (keeps data) or make purge.
	MSG
	;;
examples)
	"${compose[@]}" --profile examples up -d
	echo "the example publisher and workers run; watch them with make logs"
	;;
down)
	"${compose[@]}" --profile examples down --remove-orphans
	;;
purge)
	"${compose[@]}" --profile examples down --remove-orphans --volumes
	;;
logs)
	"${compose[@]}" --profile examples logs -f --tail=50
	;;
*)
	echo "usage: $0 up|down|purge|logs|examples" >&2
	exit 2
	;;
esac
