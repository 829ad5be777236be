#!/usr/bin/env bash
# Builds NSQ 1.3.0's nsqd, nsqlookupd and nsqadmin from the Go module proxy, for the interop
# tests that run Tern against the real thing (make interop-test). Usage:
#   contrib/nsq-reference.sh [output dir, default .cache/nsq-v1.3.0]
# It does nothing when the binaries are already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=v1.3.0
out="${1:-.cache/nsq-$version}"
if [ -x "$out/nsqd" ] && [ -x "$out/nsqlookupd" ] && [ -x "$out/nsqadmin" ]; then
	exit 0
fi
# `go install ...@v1.3.0` would be simpler, but it asks the proxy for the module's version
# list, which this environment's proxy refuses; downloading the exact version works.
src="$(go mod download -json "github.com/nsqio/nsq@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$src" ] || [ ! -d "$src" ]; then
	echo "nsq-reference: could not download github.com/nsqio/nsq@$version" >&2
	exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The module cache is read-only and the build may write go.sum entries: build from a copy.
cp -R "$src/." "$tmp/"
chmod -R u+w "$tmp"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
(cd "$tmp" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$out/" ./apps/nsqd ./apps/nsqlookupd ./apps/nsqadmin)
echo "nsq-reference: NSQ $version in $out"
