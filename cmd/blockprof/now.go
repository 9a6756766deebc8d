package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"blockprof/internal/attach"
	"blockprof/internal/engine"
	"blockprof/profiles"
)

const nowUsage = `Usage:
  blockprof now -p PID[,PID...] [--format text|json]

What every thread of the processes is doing right now: how long it has
been waiting, in which syscall, on what (file, socket, mutex and who holds
it), with its kernel, native and Python stacks. Threads waiting at the
same place share one entry; a wait cycle is called a deadlock.

Flags:
`

// now runs `blockprof now`: a recording of no length. The kernel gives
// every thread already off the CPU its stacks and target at attach, and
// closes them at once; how long each has waited comes from the scheduler.
func now(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("now", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	pids := fs.IntSliceP("pid", "p", nil, "processes to look at (repeatable, or comma-separated)")
	format := fs.String("format", "text", "text, or json for scripts")
	unwind := fs.Bool("unwind", true, "walk user stacks with .eh_frame tables (code without frame pointers)")
	noPython := fs.Bool("no-python", false, "don't read Python frames of CPython targets")
	fs.Usage = func() {
		fmt.Fprint(stdout, nowUsage)
		fmt.Fprint(stdout, fs.FlagUsages())
	}
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK // pflag printed the usage already
		}
		return usageErr(err)
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Errorf("unexpected argument %q (use -p PID)", fs.Arg(0)))
	case len(*pids) == 0:
		return usageErr(errors.New("nothing to look at: give -p PID"))
	case *format != "text" && *format != "json":
		return usageErr(fmt.Errorf("unknown --format %q (want text or json)", *format))
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitError
	}
	if err := checkTargets(*pids, nil); err != nil {
		return fail(err)
	}
	if err := checkPrivileges(); err != nil {
		return fail(err)
	}
	if err := attach.CheckBTF(); err != nil {
		return fail(err)
	}
	rec, err := engine.Start(ctx, engine.Config{
		PIDs: *pids, UserStacks: true, KernelStacks: true, Unwind: *unwind, Python: !*noPython,
		Warn: func(msg string) { fmt.Fprintf(stderr, "blockprof: %s\n", msg) },
	})
	if err != nil {
		return fail(err)
	}
	defer rec.Close()
	at := time.Now()
	p, err := rec.Stop("snapshot")
	if err != nil {
		return fail(err)
	}
	snap := snapshotOf(p, *pids, at)
	if *format == "json" {
		if err := profiles.WriteSnapshotJSON(stdout, snap); err != nil {
			return fail(err)
		}
		return exitOK
	}
	profiles.WriteSnapshot(stdout, snap)
	return exitOK
}

// snapshotOf lists every live thread of pids, with its wait from p.
func snapshotOf(p *profiles.Profile, pids []int, at time.Time) *profiles.Snapshot {
	snap := &profiles.Snapshot{At: at, Deadlocks: p.Deadlocks}
	waiting := map[int]*profiles.Waiting{}
	for i := range p.Waiting {
		waiting[p.Waiting[i].Sample.TID] = &p.Waiting[i]
	}
	for _, pid := range pids {
		comm := strings.TrimSpace(readFile(fmt.Sprintf("/proc/%d/comm", pid)))
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			var tid int
			if _, err := fmt.Sscan(task.Name(), &tid); err != nil {
				continue
			}
			t := profiles.ThreadNow{PID: pid, TID: tid, Comm: comm,
				Thread: strings.TrimSpace(readFile(fmt.Sprintf("/proc/%d/task/%d/comm", pid, tid)))}
			if w := waiting[tid]; w != nil {
				t.Waiting, t.State = w, w.Sample.State
			} else if st, ok := readStat(tid); ok {
				t.State = string(st.state)
			}
			snap.Threads = append(snap.Threads, t)
		}
	}
	sort.Slice(snap.Threads, func(i, j int) bool { return snap.Threads[i].TID < snap.Threads[j].TID })
	return snap
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
