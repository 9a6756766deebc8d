#!/usr/bin/env bash
# Builds Grafana Pyroscope v1.8.0 from the Go module proxy, for the push
# test (cmd/blockprof/serve_push_test.go), and caches the binary under
# ${XDG_CACHE_HOME:-$HOME/.cache}/blockprof/pyroscope-v1.8.0/pyroscope.
# Prints the binary's path. A second run finds the cache and returns at once.
#
# `go install .../cmd/pyroscope@v1.8.0` cannot work: the module's go.mod
# replaces github.com/grafana/pyroscope/api with its nested ./api module,
# which the module zip lacks. So: copy the module, drop that replace, require
# the published api module instead, and build there (~2 min, ~130 MB).
set -euo pipefail

version=v1.8.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/blockprof/pyroscope-$version"
bin="$cache/pyroscope"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

dir="$(go mod download -json "github.com/grafana/pyroscope@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ]; then
	echo "build.sh: go mod download found no module directory for pyroscope@$version" >&2
	exit 1
fi
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
rm -f go.work go.work.sum
go mod edit -dropreplace=github.com/grafana/pyroscope/api -require=github.com/grafana/pyroscope/api@v1.0.0
GOFLAGS=-mod=mod go build -o "$work/pyroscope" ./cmd/pyroscope
mv "$work/pyroscope" "$bin"
echo "$bin"
