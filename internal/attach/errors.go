// Package attach loads blockprof's BPF programs, attaches them to the
// scheduler tracepoints and reads what they aggregated. It is the only
// package that talks to the kernel's BPF interface.
package attach

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

var (
	// ErrPermission: the caller lacks root or CAP_BPF+CAP_PERFMON.
	ErrPermission = errors.New("not permitted to load BPF programs (run as root, or grant CAP_BPF and CAP_PERFMON)")
	// ErrNoBTF: the kernel exposes no BTF, which CO-RE and tp_btf need.
	ErrNoBTF = errors.New("kernel has no BTF (/sys/kernel/btf/vmlinux missing): blockprof needs Linux >= 5.15 built with CONFIG_DEBUG_INFO_BTF")
	// ErrNoProcess: a target PID does not exist.
	ErrNoProcess = errors.New("no such process")
)

// classify maps kernel errors to the sentinels above, keeping the cause.
func classify(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s: %w (%v)", op, ErrPermission, err)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// CheckBTF reports ErrNoBTF when the kernel lacks BTF.
func CheckBTF() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return ErrNoBTF
	}
	return nil
}
