// Package profiles writes what blockprof recorded: pprof files shaped like
// Go's block profile, folded stacks, and the first screen a person reads.
package profiles

import (
	"time"

	"blockprof/internal/symbolize"
)

// Profile is one recording, symbolized and ready to write.
type Profile struct {
	Start    time.Time
	Duration time.Duration
	// Asked is the recording length asked for, set only when the
	// recording stopped before it; Stopped then says why (e.g. "target
	// exited", "interrupted").
	Asked   time.Duration
	Stopped string
	// Comments are free text kept in the pprof file: the command line,
	// targets, drop counts.
	Comments []string
	Samples  []Sample
	// Drops counts events lost in the kernel or in user space, by reason.
	Drops map[string]uint64
	// Processes describes each target process seen, by PID.
	Processes map[int]Process
	// Latency is the distribution of single off-CPU intervals by syscall,
	// all targets together, largest total first.
	Latency []Latency
	// Loops are the event-loop threads measured in loop mode, and Stall
	// the iteration length that made a stall.
	Loops []Loop
	Stall time.Duration
	// Waiting are the threads still off the CPU when the recording
	// stopped, longest wait first, and Deadlocks the wait cycles among
	// them (tids, each cycle from its smallest).
	Waiting   []Waiting
	Deadlocks [][]int
}

// Waiting is a thread that was still waiting when the recording stopped:
// a stuck service's threads.
type Waiting struct {
	// Waited is how long its wait had lasted at the end (from the
	// scheduler when it began before the recording; at least the
	// recording's length).
	Waited time.Duration
	// Sample is the wait's own sample (its stack, syscall and target).
	Sample Sample
	// Holder is the thread holding the mutex it waits for, where the
	// mutex records its owner (glibc pthread mutexes); 0 when none is
	// known. HolderName is its name.
	Holder     int
	HolderName string
}

// Loop is one event-loop thread: its iterations (from the return of its
// loop wait to the next call) and its stalls (iterations longer than
// Profile.Stall). What the stalls did is in the samples with Loop values.
type Loop struct {
	PID, TID     int
	Comm, Thread string
	Wait         string // the loop's wait syscall, e.g. "epoll_wait"
	Iterations   int64
	// P50, P99 and Max of the iteration length; the percentiles are read
	// off log-linear buckets (within 1/8).
	P50, P99, Max time.Duration
	Stalls        int64
	StallTime     time.Duration // all stalls' lengths summed
	Worst         time.Duration
	// Ongoing: the loop was inside a stall when the recording ended (that
	// stall is counted with its length so far).
	Ongoing bool
}

// LoopValues are what a sample contributed to event-loop stalls: time
// blocked, waiting for a CPU, and running (on-CPU samples scaled to the
// stalls' exact on-CPU time), and the stalls it was the largest part of.
type LoopValues struct {
	Stalls                   int64
	Blocked, RunQueue, OnCPU time.Duration
}

// Total is the stall time the sample stands for.
func (v *LoopValues) Total() time.Duration { return v.Blocked + v.RunQueue + v.OnCPU }

// Latency summarises the off-CPU intervals spent in one syscall on one
// target. The percentiles come from log2 buckets: each is the upper edge of
// its bucket (at most Max), so it is exact to within a factor of two.
type Latency struct {
	Syscall string // "none": not in a syscall (page fault, preemption in the kernel)
	Target  string // what it waited on, "" if unknown
	// Idle: every interval of this row was idle (waiting for work).
	Idle          bool
	Count         int64
	Total         time.Duration
	P50, P99, Max time.Duration
}

// Process is what the profile knows about one target process.
type Process struct {
	PID     int
	Comm    string
	Command string             // full command line, may be empty
	Exited  bool               // the process ended during the recording
	Main    *symbolize.Mapping // the main executable's mapping, may be nil
}

// Sample is one aggregated off-CPU stack of one thread in one state.
type Sample struct {
	// Stack is leaf first: synthetic frames (if any), kernel frames, then
	// user frames out to the thread's entry point.
	Stack    []symbolize.Location
	PID, TID int
	Comm     string // process name
	Thread   string // thread name
	// State is the task state at switch-out: "S" (interruptible sleep), "D"
	// (uninterruptible), "R" (preempted while running), or another letter.
	State string
	// Kind is what the time was: "blocking" for a voluntary switch-out,
	// "on-cpu" for a loop stall's on-CPU samples,
	// "idle" for one that waited for work (see internal/idle; the summary
	// keeps these out of its ranking), "preempted" for an involuntary one
	// (counted only on request).
	Kind string
	// Count is the number of off-CPU intervals folded into this sample.
	Count int64
	// Blocked is the time from switch-out to wakeup; RunQueue the time from
	// wakeup until the thread ran again.
	Blocked, RunQueue time.Duration
	// Labels are extra string labels: syscall, fd, target, waker, idle...
	Labels map[string]string
	// NumLabels are numeric labels (bytes asked for, sleep requested...),
	// with their units in NumUnits ("bytes", "nanoseconds").
	NumLabels map[string]int64
	NumUnits  map[string]string
	// Loop is set on event-loop stall samples only (loop mode); those
	// carry no off-CPU values of their own (Count, Blocked and RunQueue
	// are zero): the same intervals are in the ordinary samples too.
	Loop *LoopValues
}

// SetNum sets numeric label key to v, in unit.
func (s *Sample) SetNum(key string, v int64, unit string) {
	if s.NumLabels == nil {
		s.NumLabels, s.NumUnits = map[string]int64{}, map[string]string{}
	}
	s.NumLabels[key] = v
	s.NumUnits[key] = unit
}

// SyntheticLocation is a frame no address produced, such as the
// "[read tcp 127.0.0.1:6379]" leaf naming what a thread waited on.
func SyntheticLocation(name string) symbolize.Location {
	return symbolize.Location{
		Mapping: &symbolize.Mapping{File: syntheticFile},
		Frames:  []symbolize.Frame{{Function: name}},
	}
}
