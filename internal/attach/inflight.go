package attach

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Cut says how the recording window cut an interval: a wait that began
// before it (measured from the window's start) or that was still going at
// its end (closed there), or both.
type Cut uint32

const (
	CutBefore Cut = 1 // CUT_BEFORE
	CutAfter  Cut = 2 // CUT_AFTER
)

func (c Cut) String() string {
	switch c {
	case CutBefore:
		return "before"
	case CutAfter:
		return "after"
	case CutBefore | CutAfter:
		return "both"
	}
	return ""
}

// Waiting is a target thread that was still off the CPU when counting
// stopped (see Detach).
type Waiting struct {
	TGID, TID uint32
	// Since is when its wait began (CLOCK_MONOTONIC): from the scheduler
	// for a wait older than the window, else its switch-out; zero if the
	// kernel did not say.
	Since time.Duration
	State uint32 // __state: 1 interruptible (S), 2 uninterruptible (D), ...
}

// inflightKstackBit marks kernel stack ids taken by the start iterator
// (INFLIGHT_KSTACK): they live in inflight_kstacks, not the stack map.
const inflightKstackBit = 0x40000000

// OpenWaitsInProgress gives every target thread that is off the CPU now
// the interval a switch-out would have opened, from the window's start
// (CountingSince), with its stacks, syscall and target. Call it once the
// targets' unwind tables and Python runtimes are loaded (its stacks use
// them); a thread whose wait ended in between is not counted. A no-op
// with Options.NoWaitsInProgress.
func (s *Session) OpenWaitsInProgress() error {
	if !s.waitsInProgress {
		return nil
	}
	if err := s.objs.InflightAt.Set(uint64(s.countingSince)); err != nil {
		return fmt.Errorf("open waits in progress: %w", err)
	}
	s.measureRQClocks()
	return runIter(s.objs.BprofInflightStart, "open waits in progress")
}

// measureRQClocks has the kernel note, for every CPU, how its scheduler
// clock stands against CLOCK_MONOTONIC (bprof_rq_offset): when a thread
// left the CPU is on its CPU's clock, and the CPUs' clocks differ. On each
// CPU in turn this thread reads its own schedstat (which brings its
// exec_start up to that CPU's clock now) and runs the iterator there. A
// CPU it cannot run on keeps no offset: its threads' waits get no since.
func (s *Session) measureRQClocks() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return
	}
	defer unix.SchedSetaffinity(0, &orig)
	for cpu := 0; cpu < 1024; cpu++ {
		if !orig.IsSet(cpu) {
			continue
		}
		var one unix.CPUSet
		one.Set(cpu)
		if unix.SchedSetaffinity(0, &one) != nil {
			continue
		}
		_, _ = os.ReadFile("/proc/thread-self/schedstat")
		_ = runIter(s.objs.BprofRqOffset, "measure scheduler clocks")
	}
}

// closeWaitsInProgress closes every interval still open at end (the
// window's end): once detached nothing else would.
func (s *Session) closeWaitsInProgress(end time.Duration) error {
	if err := s.objs.InflightAt.Set(uint64(end)); err != nil {
		return fmt.Errorf("close waits in progress: %w", err)
	}
	return runIter(s.objs.BprofInflightStop, "close waits in progress")
}

// runIter runs a task iterator program once over every task.
func runIter(p *ebpf.Program, what string) error {
	it, err := link.AttachIter(link.IterOptions{Program: p})
	if err != nil {
		return classify(what, err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return classify(what, err)
	}
	defer rd.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// StillWaiting lists the target threads that were off the CPU when
// counting stopped (filled by Detach).
func (s *Session) StillWaiting() ([]Waiting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Waiting
	var tid uint32
	var v blockprofInflightWait
	it := s.objs.Inflight.Iterate()
	for it.Next(&tid, &v) {
		out = append(out, Waiting{TGID: v.Tgid, TID: tid, Since: time.Duration(v.Since), State: v.State})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read waits in progress: %w", err)
	}
	return out, nil
}

// inflightStack reads a kernel stack the start iterator took.
func (s *Session) inflightStack(id int32) ([]uint64, error) {
	var v blockprofKstackFrames
	if err := s.objs.InflightKstacks.Lookup(uint32(id), &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		return nil, err
	}
	n := 0
	for n < len(v.Pcs) && v.Pcs[n] != 0 {
		n++
	}
	return append([]uint64(nil), v.Pcs[:n]...), nil
}
