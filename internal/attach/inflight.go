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
	// The iterator reads the rq clock off the thread that runs it: bring
	// that thread's accounting up to date first (reading its own
	// schedstat does), on the same OS thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, _ = os.ReadFile("/proc/thread-self/schedstat")
	return runIter(s.objs.BprofInflightStart, "open waits in progress")
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
