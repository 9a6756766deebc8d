#!/bin/sh
# Builds the demo app, records it with blockprof, and prints the first screen.
set -eu
cd "$(dirname "$0")/.."
go build -o bin/demo-app ./demo/app
mkdir -p out
./bin/blockprof record -o out/demo.pb.gz -- ./bin/demo-app
