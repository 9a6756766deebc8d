package goroutines

// The goroutine object is built from bpf/goroutines.bpf.c by `make
// generate` (pinned clang, BPF2GO_* from the Makefile), apart from the
// main object in internal/attach; the output is committed.
//go:generate go tool bpf2go -target amd64 -type go_proc -type go_park -type go_key -type go_agg_key -type go_agg_val -type go_stack -type go_fd -type go_fd_key -type go_drop goroutines ../../bpf/goroutines.bpf.c
