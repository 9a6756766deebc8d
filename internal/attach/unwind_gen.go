package attach

// The unwinder's test object: bpf/include/unwind.h behind a test hook,
// built by `make generate` like the main object.
//go:generate go tool bpf2go -target amd64 -type unw_row -type unw_mapping -type unw_mapping_key -type unw_stack -type unw_status unwtest ../../bpf/unwind_test.bpf.c
