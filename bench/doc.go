// Package bench measures what blockprof costs the processes it watches and
// the machine it runs on: throughput overhead on a context-switch-heavy
// target, attach latency, BPF run time per event, and peak memory.
//
// Run as root with `make bench`; every benchmark does its own rounds, so
// -benchtime 1x. See README.md for what each number means.
package bench
