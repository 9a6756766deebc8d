package attach

// The BPF object is built from bpf/ with a pinned clang by `make generate`,
// which sets BPF2GO_CC, BPF2GO_STRIP and BPF2GO_CFLAGS. The output is
// committed so `go build` needs no clang.
//go:generate go tool bpf2go -target amd64 -type agg_key -type agg_val -type thread_info -type drop_reason -type lat_key -type lat_val -type fd_target -type fd_key -type interval_kind -type target_kind -type waker_kind -type path_arg -type py_target -type py_stack -type unw_stack -type unw_status -type loop_stats -type loop_event -type loop_event_kind -type inflight_wait -type kstack_frames -type proc_event_kind blockprof ../../bpf/blockprof.bpf.c
