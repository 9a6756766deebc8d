package profiles

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// FoldedValue selects what the number at the end of a folded line counts.
type FoldedValue int

const (
	// FoldedDefault is stall time in nanoseconds for a loop-mode profile
	// (Profile.Stall set: only stall samples, each weighted by the stall
	// time it stands for, blocked + run-queue + on-CPU), blocked time in
	// nanoseconds otherwise. One number per line either way, which is
	// what flamegraph.pl, inferno and speedscope read.
	FoldedDefault FoldedValue = iota
	// FoldedBlocked is blocked (off-CPU) time in nanoseconds.
	FoldedBlocked
	// FoldedBlockedMicros is blocked time in microseconds, rounded down;
	// stacks under a microsecond are left out.
	FoldedBlockedMicros
	// FoldedCount is the number of off-CPU intervals.
	FoldedCount
	// FoldedRunQueue is run-queue delay in nanoseconds.
	FoldedRunQueue
	// FoldedStallTime is event-loop stall time in nanoseconds (loop
	// mode's stall samples only).
	FoldedStallTime
)

// FoldedOptions tunes WriteFolded.
type FoldedOptions struct {
	Value FoldedValue
	// Threads puts the thread name after the process name, so a flame graph
	// splits each process by thread.
	Threads bool
	// KernelSuffix appends "_[k]" to kernel frames, which flamegraph.pl and
	// inferno colour as kernel code.
	KernelSuffix bool
}

// WriteFolded writes p as collapsed stacks ("comm;root;...;leaf VALUE"), the
// input of flamegraph.pl, inferno and speedscope. Lines are sorted and
// identical stacks summed; stacks whose value is zero are left out. By
// default a loop-mode profile is weighted by stall time (see
// FoldedDefault).
func WriteFolded(w io.Writer, p *Profile, opts FoldedOptions) error {
	value := opts.Value
	if value == FoldedDefault {
		value = FoldedBlocked
		if p.Stall > 0 {
			value = FoldedStallTime
		}
	}
	sums := map[string]int64{}
	for i := range p.Samples {
		s := &p.Samples[i]
		var v int64
		switch value {
		case FoldedStallTime:
			if s.Loop != nil {
				v = s.Loop.Total().Nanoseconds()
			}
		case FoldedBlocked:
			v = s.Blocked.Nanoseconds()
		case FoldedBlockedMicros:
			v = s.Blocked.Microseconds()
		case FoldedCount:
			v = s.Count
		case FoldedRunQueue:
			v = s.RunQueue.Nanoseconds()
		default:
			return fmt.Errorf("unknown folded value %d", opts.Value)
		}
		if v == 0 {
			continue
		}
		sums[foldStack(s, opts)] += v
	}
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		bw.WriteString(k)
		bw.WriteByte(' ')
		bw.WriteString(strconv.FormatInt(sums[k], 10))
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write folded stacks: %w", err)
	}
	return nil
}

// foldStack renders one sample's stack root first, after the process (and
// optionally thread) name.
func foldStack(s *Sample, opts FoldedOptions) string {
	var sb strings.Builder
	comm := s.Comm
	if comm == "" {
		comm = "pid " + strconv.Itoa(s.PID)
	}
	sb.WriteString(foldName(comm))
	if opts.Threads {
		thread := s.Thread
		if thread == "" {
			thread = "tid " + strconv.Itoa(s.TID)
		}
		sb.WriteByte(';')
		sb.WriteString(foldName(thread))
	}
	entries := flatten(s.Stack)
	for i := len(entries) - 1; i >= 0; i-- {
		sb.WriteByte(';')
		sb.WriteString(foldName(entries[i].name()))
		if opts.KernelSuffix && isKernel(entries[i].loc) {
			sb.WriteString("_[k]")
		}
	}
	return sb.String()
}

// foldName keeps a name from breaking the one-line, ';'-separated format.
var foldName = strings.NewReplacer(";", ":", "\n", " ", "\r", " ").Replace
