package attach

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// feature is a kernel facility some option needs, found by a name in the
// kernel's BTF: helpers are BTF functions (BPF_CALL_x bodies, whose
// address their proto takes, so never inlined away), tracepoints usable
// by tp_btf have a btf_trace_<name> typedef.
type feature struct {
	btfName string
	what    string // as the user reads it
	since   string // the first Linux release that has it
	needBy  string // who needs it: "blockprof", "--unwind", ...
	instead string // what to do without it ("" for the core)
}

// requiredFeatures lists what opts need, core first.
func requiredFeatures(opts Options) []feature {
	fs := []feature{
		{"btf_trace_sched_switch", "BTF tracepoints (tp_btf)", "5.5", "blockprof", ""},
		{"bpf_task_storage_get", "task storage for tracing programs", "5.11", "blockprof", ""},
		{"bpf_task_pt_regs", "the bpf_task_pt_regs helper", "5.15", "blockprof", ""},
		{"bpf_get_current_task_btf", "the bpf_get_current_task_btf helper", "5.11", "blockprof", ""},
		{"bpf_ringbuf_reserve", "BPF ring buffers", "5.8", "blockprof", ""},
		// Waits in progress: the start iterator reads other tasks' stacks.
		{"bpf_copy_from_user_task", "the bpf_copy_from_user_task helper", "5.18", "blockprof", ""},
		{"bpf_iter__task", "task iterators", "5.8", "blockprof", ""},
	}
	if opts.Unwind && !opts.NoUserStacks {
		fs = append(fs, feature{"bpf_loop", "the bpf_loop helper", "5.17", "--unwind", "use --unwind=false (frame pointers only)"})
	}
	if opts.Loop != nil {
		fs = append(fs,
			feature{"btf_trace_sys_enter", "the raw sys_enter tracepoint", "5.5", "--loop", "drop --loop"},
			feature{"btf_trace_sys_exit", "the raw sys_exit tracepoint", "5.5", "--loop", "drop --loop"})
	}
	return fs
}

// ErrKernelFeature: the kernel lacks something an option needs.
var ErrKernelFeature = errors.New("kernel feature missing")

// CheckKernel says, in one line, what the running kernel lacks for opts:
// before anything loads, rather than as a verifier error afterwards.
func CheckKernel(opts Options) error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return ErrNoBTF
	}
	return checkFeatures(opts, func(name string) bool {
		_, err := spec.AnyTypeByName(name)
		return err == nil || errors.Is(err, btf.ErrMultipleMatches)
	})
}

func checkFeatures(opts Options, has func(btfName string) bool) error {
	for _, f := range requiredFeatures(opts) {
		if has(f.btfName) {
			continue
		}
		if f.instead == "" {
			return fmt.Errorf("%w: this kernel lacks %s (Linux >= %s), which blockprof needs: run it on a newer kernel", ErrKernelFeature, f.what, f.since)
		}
		return fmt.Errorf("%w: this kernel lacks %s (Linux >= %s), which %s needs: %s, or run on a newer kernel", ErrKernelFeature, f.what, f.since, f.needBy, f.instead)
	}
	return nil
}
