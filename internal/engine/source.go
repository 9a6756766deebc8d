package engine

import (
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/python"
)

// source is what the engine uses of an attach.Session: narrow, so the
// recording logic can be tested with synthetic records.
type source interface {
	Drain() ([]attach.Record, error)
	DetachAt(end time.Duration) error
	CountingSince() time.Duration
	Close() error
	AddTarget(pid int) error
	Drops() (map[string]uint64, error)
	Threads() (map[uint32]attach.Thread, error)
	Latencies() ([]attach.Latency, error)

	AddUnwind(pid int) error
	UnwindStats() attach.UnwindStats

	AddPython(tgid uint32, t *python.Target) error
	NextPythonStack() (*attach.PyStack, error)

	LoopThreads() ([]attach.LoopThread, error)
	LoopEvents() ([]attach.LoopEvent, error)

	// Bounded state: target identities per window, per-process release,
	// and new or exited followed processes as they happen.
	NewWindow()
	ForgetProcess(tgid uint32)
	NextProcEvent() (attach.ProcEvent, error)

	OpenWaitsInProgress() error
	StillWaiting() ([]attach.Waiting, error)
}

var _ source = (*attach.Session)(nil)
