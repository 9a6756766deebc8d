package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"blockprof/internal/syscalls"

	"github.com/spf13/pflag"
)

// recordConfig is a parsed and checked `blockprof record` command line.
type recordConfig struct {
	pids      []int
	tids      []int
	command   []string // after --
	duration  time.Duration
	output    string
	format    string // pprof | folded
	minBlock  time.Duration
	maxBlock  time.Duration
	preempted bool
	stacks    string // user,kernel | user | kernel
	exactK    bool
	noRunQ    bool
	noPython  bool
	idle      bool
	// What blocked syscalls waited on, and who woke them.
	syscalls     []string       // --syscalls: names, "none" for none
	syscallNrs   []int          // ... as numbers
	noSyscall    bool           // "none" was among them
	target       *regexp.Regexp // --target: keep intervals whose target matches
	noTargets    bool
	unwind       bool // user stacks with .eh_frame tables
	noWakers     bool
	wakerStacks  bool
	goroutines   bool
	targetFrames bool
	top          int
	quiet        bool
	readyFile    string
	interval     time.Duration // how often the kernel's aggregation is drained
	// Loop mode: event-loop stalls.
	loop        bool          // find loop threads by behaviour
	loopThreads []int         // --loop-thread: these are loop threads
	stall       time.Duration // an iteration longer than this is a stall
	loopHz      int           // on-CPU samples per second of loop-thread CPU time
}

// loopMode is true when stalls are measured.
func (c *recordConfig) loopMode() bool { return c.loop || len(c.loopThreads) > 0 }

func (c *recordConfig) userStacks() bool   { return strings.Contains(c.stacks, "user") }
func (c *recordConfig) kernelStacks() bool { return strings.Contains(c.stacks, "kernel") }

const recordUsage = `Usage:
  blockprof record [flags] -p PID[,PID...]
  blockprof record [flags] -- CMD [ARGS...]

Records off-CPU time of the targets' threads until --duration ends, Ctrl-C,
or every target exits; then writes the profile and prints a summary.

Flags:
`

// errHelp means --help was asked for: print usage, exit 0.
var errHelp = pflag.ErrHelp

func parseRecordFlags(args []string, now time.Time, helpOut io.Writer) (*recordConfig, error) {
	c := &recordConfig{}
	fs := pflag.NewFlagSet("record", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.IntSliceVarP(&c.pids, "pid", "p", nil, "profile these processes (repeatable, or comma-separated)")
	fs.IntSliceVarP(&c.tids, "tid", "t", nil, "only these threads of the target processes")
	fs.DurationVarP(&c.duration, "duration", "d", 0, "stop after this long (default: until Ctrl-C or the targets exit)")
	fs.StringVarP(&c.output, "output", "o", "", "profile file (default: blockprof-PID-DATE-TIME.pb.gz, or .folded)")
	fs.StringVar(&c.format, "format", "pprof", "output format: pprof or folded (collapsed stacks for flame graphs)")
	fs.DurationVar(&c.minBlock, "min-block", 0, "ignore off-CPU intervals shorter than this (counted as filtered)")
	fs.DurationVar(&c.maxBlock, "max-block", 0, "ignore off-CPU intervals longer than this (0: no limit)")
	fs.BoolVar(&c.preempted, "preempted", false, "also record involuntary preemption (as run-queue time, kind=preempted)")
	fs.StringVar(&c.stacks, "stacks", "user,kernel", "which stacks to capture: user,kernel | user | kernel")
	fs.BoolVar(&c.unwind, "unwind", true, "walk user stacks with .eh_frame tables (code without frame pointers); false: frame pointers only")
	fs.BoolVar(&c.exactK, "exact-kernel-stacks", false, "walk the kernel stack at every switch-out, never reuse the last one")
	fs.BoolVar(&c.noRunQ, "no-runqueue", false, "don't split off-CPU time into blocked and run-queue (cheaper for the rest of the machine)")
	fs.BoolVar(&c.noPython, "no-python", false, "don't read Python frames of CPython targets (native stacks only)")
	fs.BoolVar(&c.idle, "idle", false, "keep idle waits (event-loop waits, accept, parked Go threads) in the profile, labelled kind=idle")
	fs.StringSliceVar(&c.syscalls, "syscalls", nil, "only intervals blocked in these syscalls, e.g. read,connect,fsync (\"none\": in no syscall)")
	target := fs.String("target", "", "only intervals whose target (file, socket, futex, ...) matches this regular expression")
	fs.BoolVar(&c.noTargets, "no-targets", false, "don't resolve what syscalls waited on (files, sockets, futexes, timeouts): cheaper")
	fs.BoolVar(&c.noWakers, "no-wakers", false, "don't record who woke each blocked interval")
	fs.BoolVar(&c.wakerStacks, "waker-stacks", false, "also record the waker's stack (kernel; user too when it is a thread of the target)")
	fs.BoolVar(&c.goroutines, "goroutines", false, "also measure goroutine parks of Go targets (chan, mutex, select, sleep, IO wait): uprobes on the Go runtime, see Cost")
	fs.BoolVar(&c.targetFrames, "target-frames", true, "add a leaf frame naming what was waited on, e.g. [read tcp 127.0.0.1:6379]")
	fs.BoolVar(&c.loop, "loop", false, "event-loop mode: find loop threads (repeated epoll_wait/poll/select) and attribute their stalls")
	fs.IntSliceVar(&c.loopThreads, "loop-thread", nil, "loop mode on these threads (with --loop: and on any found)")
	fs.DurationVar(&c.stall, "stall", 100*time.Millisecond, "loop mode: an iteration (wait return to next wait) longer than this is a stall")
	fs.IntVar(&c.loopHz, "loop-hz", 199, "loop mode: on-CPU samples per second of a loop thread's CPU time (0: none)")
	fs.IntVar(&c.top, "top", 10, "stacks shown in the summary")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "no status line and no summary")
	fs.StringVar(&c.readyFile, "ready-file", "", "create this file once recording has started (for scripts and tests)")
	fs.DurationVar(&c.interval, "drain-interval", time.Second, "how often to read the kernel's aggregation")
	_ = fs.MarkHidden("drain-interval")

	fs.Usage = func() {
		fmt.Fprint(helpOut, recordUsage)
		fmt.Fprint(helpOut, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, errHelp // pflag printed the usage already
		}
		return nil, err
	}
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		if dash > 0 {
			return nil, fmt.Errorf("unexpected argument %q before --", fs.Args()[0])
		}
		c.command = fs.Args()
		if len(c.command) == 0 {
			return nil, errors.New("no command after --")
		}
	} else if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (use -p PID, or -- CMD to launch a command)", fs.Arg(0))
	}
	switch {
	case len(c.pids) == 0 && len(c.command) == 0:
		return nil, errors.New("nothing to profile: give -p PID or -- CMD")
	case len(c.pids) > 0 && len(c.command) > 0:
		return nil, errors.New("give either -p PID or -- CMD, not both")
	}
	for _, p := range append(append([]int{}, c.pids...), c.tids...) {
		if p <= 0 {
			return nil, fmt.Errorf("invalid process or thread id %d", p)
		}
	}
	if c.format != "pprof" && c.format != "folded" {
		return nil, fmt.Errorf("unknown --format %q (want pprof or folded)", c.format)
	}
	if c.duration < 0 || c.minBlock < 0 || c.maxBlock < 0 {
		return nil, errors.New("durations must not be negative")
	}
	if c.maxBlock > 0 && c.maxBlock < c.minBlock {
		return nil, fmt.Errorf("--max-block %v is below --min-block %v", c.maxBlock, c.minBlock)
	}
	switch c.stacks {
	case "user,kernel", "kernel,user", "user", "kernel":
	default:
		return nil, fmt.Errorf("unknown --stacks %q (want user,kernel, user or kernel)", c.stacks)
	}
	for _, name := range c.syscalls {
		name = strings.TrimSpace(name)
		if name == "none" {
			c.noSyscall = true
			continue
		}
		nr, ok := syscalls.Number(name)
		if !ok {
			return nil, fmt.Errorf("unknown syscall %q in --syscalls", name)
		}
		c.syscallNrs = append(c.syscallNrs, nr)
	}
	if len(c.syscalls) > 0 && len(c.syscallNrs) == 0 && !c.noSyscall {
		return nil, errors.New("--syscalls names no syscall")
	}
	if *target != "" && c.noTargets {
		return nil, errors.New("--target needs targets (drop --no-targets)")
	}
	if *target != "" {
		re, err := regexp.Compile(*target)
		if err != nil {
			return nil, fmt.Errorf("bad --target pattern: %v", err)
		}
		c.target = re
	}
	if c.wakerStacks && (c.noWakers || c.noRunQ) {
		return nil, errors.New("--waker-stacks needs wakers (drop --no-wakers / --no-runqueue)")
	}
	if c.interval <= 0 {
		c.interval = time.Second
	}
	if !c.loopMode() {
		for _, name := range []string{"stall", "loop-hz"} {
			if fs.Changed(name) {
				return nil, fmt.Errorf("--%s needs --loop (or --loop-thread)", name)
			}
		}
	}
	if c.loopMode() {
		if c.stall <= 0 {
			return nil, errors.New("--stall must be above zero")
		}
		if c.loopHz < 0 || c.loopHz > 10000 {
			return nil, fmt.Errorf("--loop-hz %d out of range (0 to 10000)", c.loopHz)
		}
		for _, tid := range c.loopThreads {
			if tid <= 0 {
				return nil, fmt.Errorf("invalid loop thread id %d", tid)
			}
		}
	}
	if c.output == "" {
		c.output = defaultOutput(c, now)
	}
	return c, nil
}

// defaultOutput names the profile after the target and the time, so
// successive recordings never overwrite each other.
func defaultOutput(c *recordConfig, now time.Time) string {
	who := "cmd-" + filepath.Base(firstOr(c.command, "cmd"))
	if len(c.pids) > 0 {
		who = fmt.Sprint(c.pids[0])
	}
	ext := ".pb.gz"
	if c.format == "folded" {
		ext = ".folded"
	}
	return fmt.Sprintf("blockprof-%s-%s%s", who, now.Format("20060102-150405"), ext)
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
