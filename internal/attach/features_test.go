package attach

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// Each missing feature gets one line naming it, the release that has it,
// the option that needs it and what to do instead.
func TestCheckFeatures(t *testing.T) {
	all := Options{PIDs: []int{1}, Unwind: true, Loop: &LoopOptions{Stall: time.Millisecond}}
	if err := checkFeatures(all, func(string) bool { return true }); err != nil {
		t.Fatalf("everything present: %v", err)
	}
	for _, tc := range []struct {
		missing string
		opts    Options
		want    []string
	}{
		{"bpf_loop", all, []string{"bpf_loop", "5.17", "--unwind needs", "--unwind=false"}},
		{"btf_trace_sys_enter", all, []string{"sys_enter", "--loop needs", "drop --loop"}},
		{"bpf_task_pt_regs", all, []string{"bpf_task_pt_regs", "5.15", "blockprof needs"}},
		{"bpf_loop", Options{PIDs: []int{1}}, nil},                                   // not asked for
		{"btf_trace_sys_exit", Options{PIDs: []int{1}, Unwind: true}, nil},           // not asked for
		{"bpf_loop", Options{PIDs: []int{1}, Unwind: true, NoUserStacks: true}, nil}, // no user stacks: no unwinder
	} {
		err := checkFeatures(tc.opts, func(name string) bool { return name != tc.missing })
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s missing, %+v: %v, want no error", tc.missing, tc.opts, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrKernelFeature) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s missing: %v, want a one-line ErrKernelFeature", tc.missing, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s missing: %q lacks %q", tc.missing, err, w)
			}
		}
	}
}

// This kernel has what every option needs (the suite runs on >= 5.17).
func TestCheckKernel(t *testing.T) {
	if err := CheckBTF(); err != nil && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err := CheckKernel(Options{PIDs: []int{1}, Unwind: true, Loop: &LoopOptions{Stall: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
}
