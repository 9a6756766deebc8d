package profiles

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// ThreadNow is one thread of a snapshot (blockprof now): waiting, with
// its wait's sample, or running.
type ThreadNow struct {
	PID, TID     int
	Comm, Thread string
	State        string // S, D, ...; "R" running or runnable
	Waiting      *Waiting
}

// Snapshot is what blockprof now saw: every thread of the targets.
type Snapshot struct {
	At        time.Time
	Threads   []ThreadNow
	Deadlocks [][]int
}

// WriteSnapshot prints a snapshot as text: deadlocks first, then one
// block per group of threads waiting at the same place on the same thing
// (longest wait first) with the whole stack, then the running threads.
func WriteSnapshot(w io.Writer, s *Snapshot) {
	names := map[int]string{}
	pids := map[int]string{}
	for _, t := range s.Threads {
		names[t.TID] = t.Thread
		pids[t.PID] = t.Comm
	}
	var procs []string
	for pid, comm := range pids {
		procs = append(procs, fmt.Sprintf("%d (%s)", pid, comm))
	}
	sort.Strings(procs)
	fmt.Fprintf(w, "blockprof now: %s, %s, at %s\n", strings.Join(procs, ", "), plural(len(s.Threads), "thread"),
		s.At.Format("15:04:05"))
	for _, cyc := range s.Deadlocks {
		parts := make([]string, len(cyc))
		for i, tid := range cyc {
			parts[i] = fmt.Sprintf("%d %s", tid, names[tid])
		}
		fmt.Fprintf(w, "DEADLOCK: %s → back to the first: each waits for a mutex the next one holds\n",
			strings.Join(parts, " → "))
	}
	type group struct {
		key     string
		longest time.Duration
		threads []ThreadNow
	}
	var groups []*group
	byKey := map[string]*group{}
	var running []ThreadNow
	for _, t := range s.Threads {
		if t.Waiting == nil {
			running = append(running, t)
			continue
		}
		k := snapshotKey(t)
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.threads = append(g.threads, t)
		g.longest = max(g.longest, t.Waiting.Waited)
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].longest > groups[j].longest })
	for _, g := range groups {
		t := g.threads[0]
		wt := t.Waiting
		who := fmt.Sprintf("%d %s", t.TID, t.Thread)
		if len(g.threads) > 1 {
			tids := make([]string, len(g.threads))
			for i, t := range g.threads {
				tids[i] = fmt.Sprint(t.TID)
			}
			who = fmt.Sprintf("%d threads: %s", len(g.threads), strings.Join(tids, ","))
		}
		fmt.Fprintf(w, "\nwaiting %s  %s  %s  %s\n", fmtDur(g.longest), t.State, who, onWhat(wt.Sample))
		switch {
		case wt.Holder != 0:
			fmt.Fprintf(w, "  held by %d %s\n", wt.Holder, wt.HolderName)
		case wt.Sample.Labels["syscall"] == "futex":
			fmt.Fprintf(w, "  holder: not recorded (not a glibc mutex, or no owner in it)\n")
		}
		for _, line := range stackLines(wt.Sample) {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	if len(running) > 0 {
		tids := make([]string, len(running))
		for i, t := range running {
			tids[i] = fmt.Sprintf("%d %s", t.TID, t.Thread)
		}
		fmt.Fprintf(w, "\nrunning or runnable: %s\n", strings.Join(tids, ", "))
	}
}

// snapshotKey groups threads whose waits look the same.
func snapshotKey(t ThreadNow) string {
	s := t.Waiting.Sample
	return strings.Join(append(stackLines(s), t.State, onWhat(s), fmt.Sprint(t.Waiting.Holder)), "\n")
}

// onWhat is "syscall target".
func onWhat(s Sample) string {
	sys, tgt := s.Labels["syscall"], s.Labels["target"]
	if sys == "" || sys == "none" {
		return "(in no syscall)"
	}
	if tgt == "" {
		return sys
	}
	return sys + " " + tgt
}

// stackLines renders a sample's stack: the kernel part on one line, then
// one line per user or interpreter frame, innermost first.
func stackLines(s Sample) []string {
	var kernel []string
	var out []string
	for _, e := range flatten(s.Stack) {
		switch {
		case isSynthetic(e.loc):
			continue
		case isKernel(e.loc):
			kernel = append(kernel, e.name())
		default:
			out = append(out, frameText(e))
		}
	}
	if len(kernel) > 0 {
		if len(kernel) > 6 {
			kernel = append(kernel[:6], "…")
		}
		out = append([]string{"[kernel] " + strings.Join(kernel, " ← ")}, out...)
	}
	return out
}

func frameText(e entry) string {
	if e.frame != nil && e.frame.File != "" && e.frame.Line > 0 {
		return fmt.Sprintf("%s (%s:%d)", e.name(), path.Base(e.frame.File), e.frame.Line)
	}
	return e.name()
}

// snapshotJSON is the --format json shape of a snapshot.
type snapshotJSON struct {
	At        time.Time    `json:"at"`
	Threads   []threadJSON `json:"threads"`
	Deadlocks [][]int      `json:"deadlocks"`
}

type threadJSON struct {
	PID      int      `json:"pid"`
	TID      int      `json:"tid"`
	Comm     string   `json:"comm"`
	Thread   string   `json:"thread"`
	State    string   `json:"state"`
	Waiting  bool     `json:"waiting"`
	WaitedNs int64    `json:"waited_ns,omitempty"`
	Syscall  string   `json:"syscall,omitempty"`
	Target   string   `json:"target,omitempty"`
	Holder   int      `json:"holder,omitempty"`
	Stack    []string `json:"stack,omitempty"`
}

// WriteSnapshotJSON writes a snapshot as one JSON document, for scripts.
func WriteSnapshotJSON(w io.Writer, s *Snapshot) error {
	out := snapshotJSON{At: s.At, Deadlocks: s.Deadlocks}
	if out.Deadlocks == nil {
		out.Deadlocks = [][]int{}
	}
	for _, t := range s.Threads {
		tj := threadJSON{PID: t.PID, TID: t.TID, Comm: t.Comm, Thread: t.Thread, State: t.State}
		if wt := t.Waiting; wt != nil {
			tj.Waiting = true
			tj.WaitedNs = wt.Waited.Nanoseconds()
			tj.Syscall = wt.Sample.Labels["syscall"]
			tj.Target = wt.Sample.Labels["target"]
			tj.Holder = wt.Holder
			tj.Stack = stackLines(wt.Sample)
		}
		out.Threads = append(out.Threads, tj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
