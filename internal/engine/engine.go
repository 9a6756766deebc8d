// Package engine is the recording engine behind blockprof's front ends: it
// attaches the BPF programs (internal/attach), drains what the kernel
// aggregated, follows children, Python interpreters and newly mapped code
// while the targets live, and turns it all into a symbolized
// profiles.Profile with the idle rules applied.
//
// A front end calls Start, then Stop for one profile of the whole
// recording (blockprof record), or Snapshot now and then for a profile of
// each window since the previous one while recording goes on (a
// long-running profiler), then Stop for the last window. What to write,
// and where, is the front end's business.
package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

// Config is what to record and how. The zero value of a field is its
// cheapest setting, except where the field says otherwise.
type Config struct {
	// PIDs are the processes to record, already running.
	PIDs []int
	// TIDs, when set, restrict recording to these threads.
	TIDs []int
	// Launched is the PID of a command started behind an exec gate, in
	// place of PIDs: it is recorded with every child it forks. Release
	// opens the gate once the programs are attached; the command then
	// execs under the same PID, so none of its blocking is missed.
	Launched int
	Release  func() error
	// LateTargets lets targets be added while recording (AddTargets), as a
	// long-running profiler finds them: PIDs may then be empty, and the
	// recording does not end when the targets exit.
	LateTargets bool

	// Duration ends the recording this long after counting started (the
	// programs attached); 0: it runs until Stop, ctx ends, or the targets
	// exit.
	Duration time.Duration
	// DrainInterval is how often the kernel's aggregation is read; 0 means
	// one second.
	DrainInterval time.Duration

	// MinBlock and MaxBlock leave out intervals outside the range, counted
	// in the kernel (MaxBlock 0: no limit).
	MinBlock, MaxBlock time.Duration
	// Preempted records involuntary preemption as run-queue time.
	Preempted bool
	// UserStacks and KernelStacks say which stacks to take.
	UserStacks, KernelStacks bool
	// ExactKernelStacks walks the kernel stack at every switch-out.
	ExactKernelStacks bool
	// NoRunQueue does not hook wakeups: all off-CPU time is blocked time.
	NoRunQueue bool
	// NoTargets does not resolve what syscalls waited on.
	NoTargets bool
	// NoWakers does not record who woke each interval; WakerStacks also
	// records the waker's stacks.
	NoWakers, WakerStacks bool
	// Syscalls keeps only intervals in these syscalls (numbers), and
	// NoSyscall those in none; both empty: all (filtered in the kernel).
	Syscalls  []int
	NoSyscall bool
	// Target keeps only intervals whose target matches (nil: all).
	Target *regexp.Regexp
	// TargetFrames adds a leaf frame naming what was waited on.
	TargetFrames bool
	// Unwind walks user stacks with .eh_frame tables, loaded per process
	// and refreshed as code is mapped.
	Unwind bool
	// Python reads Python frames of CPython targets (the frame walker is
	// loaded only when a target may run CPython).
	Python bool
	// Loop measures event-loop stalls (off when neither Auto nor Threads).
	Loop LoopConfig
	// Goroutines also measures goroutine parks of Go targets (uprobes on
	// the Go runtime, see internal/goroutines): samples of kind
	// "goroutine" beside the threads'. With WakerStacks, the waking
	// goroutine's function too.
	Goroutines bool

	// Comments open every profile's comments (e.g. the command line).
	Comments []string
	// Warn receives one-line warnings (nil: dropped).
	Warn func(msg string)
	// OnDrain is called after every periodic drain, from the recording's
	// goroutine (nil: not called); a status line reads it.
	OnDrain func(Status)
}

// LoopConfig is loop mode: event-loop threads, their iterations and stalls.
type LoopConfig struct {
	Auto     bool          // find loop threads by behaviour
	Threads  []int         // these threads are loop threads
	Stall    time.Duration // an iteration longer than this is a stall
	SampleHz int           // on-CPU samples per second of a loop thread's CPU time
}

func (c LoopConfig) on() bool { return c.Auto || len(c.Threads) > 0 }

// Status is the recording so far, for a status line.
type Status struct {
	Elapsed           time.Duration // since counting started
	Blocked, RunQueue time.Duration // in the current window
	Intervals         uint64
}

// Reasons a recording ends by itself (Recording.Done).
const (
	ReasonInterrupted = "interrupted"      // ctx ended
	ReasonDuration    = "duration reached" // Config.Duration passed
	ReasonExited      = "target exited"    // every target process exited
)

// ErrEnded is returned by Snapshot once the recording has ended.
var ErrEnded = errors.New("recording ended")

// Recording is one running recording: a session of attached programs and
// what has been drained from it.
type Recording struct {
	recorder

	done     chan struct{} // closed once counting stopped (detached)
	stop     chan struct{}
	stopOnce sync.Once
	stopWhy  string
	snaps    chan chan snapshot
	adds     chan addTargets
	why      string // why counting stopped
	err      error  // a drain failed: the recording is lost
	finished bool   // Stop or Close ran
}

type addTargets struct {
	pids  []int
	reply chan error
}

type snapshot struct {
	p   *profiles.Profile
	err error
}

// Start attaches to the targets and starts recording in the background.
// Cancelling ctx ends the recording (Done, reason "interrupted"); the
// profile is still there for Stop.
func Start(ctx context.Context, cfg Config) (*Recording, error) {
	began := time.Now()
	if cfg.DrainInterval <= 0 {
		cfg.DrainInterval = time.Second
	}
	pids := cfg.PIDs
	if cfg.Launched != 0 {
		pids = []int{cfg.Launched}
	}
	// The Python frame walker is loaded only when it may find something.
	python := cfg.Python && (cfg.Launched != 0 || cfg.LateTargets || detectPythons(pids))
	sess, err := attach.Open(attach.Options{
		PIDs:              pids,
		TIDs:              cfg.TIDs,
		FollowChildren:    cfg.Launched != 0,
		MinBlock:          cfg.MinBlock,
		MaxBlock:          cfg.MaxBlock,
		Preempted:         cfg.Preempted,
		NoUserStacks:      !cfg.UserStacks,
		NoKernelStacks:    !cfg.KernelStacks,
		ExactKernelStacks: cfg.ExactKernelStacks,
		NoRunQueue:        cfg.NoRunQueue,
		NoTargets:         cfg.NoTargets,
		Unwind:            cfg.Unwind,
		NoWakers:          cfg.NoWakers,
		WakerStacks:       cfg.WakerStacks,
		Syscalls:          cfg.Syscalls,
		NoSyscall:         cfg.NoSyscall,
		Python:            python,
		Loop:              loopOptions(cfg.Loop),
		LateTargets:       cfg.LateTargets,
	})
	if err != nil {
		return nil, err
	}
	// Counting has started: the window starts here.
	attached := time.Now()
	r := &Recording{recorder: newRecorder(cfg, sess, symbolize.New(symbolize.Options{})),
		done: make(chan struct{}), stop: make(chan struct{}), snaps: make(chan chan snapshot),
		adds: make(chan addTargets)}
	r.python = python
	r.began, r.attached = began, attached
	r.win.start = attached
	if cfg.Goroutines {
		r.openGoroutines()
	}
	if err := r.begin(pids); err != nil {
		r.sym.Close()
		if r.gor != nil {
			r.gor.Close()
		}
		sess.Close()
		return nil, err
	}
	// Before the loop starts: the launched command has been running,
	// and forking, since begin released it.
	procs := r.watchProcs(r.done, maps.Clone(r.procs))
	go r.run(ctx, pids, procs)
	return r, nil
}

func loopOptions(c LoopConfig) *attach.LoopOptions {
	if !c.on() {
		return nil
	}
	return &attach.LoopOptions{Stall: c.Stall, Threads: c.Threads, Auto: c.Auto, SampleHz: c.SampleHz}
}

// begin lets a launched command run and takes what symbolization needs
// from the targets while they live.
func (r *Recording) begin(pids []int) error {
	if r.cfg.Launched != 0 {
		r.child = uint32(r.cfg.Launched)
		// The gate's own threads die at exec, some of them after the
		// kernel starts counting the command: ignore them by TID.
		r.ignoreTIDs = gateThreads(r.cfg.Launched)
		if r.cfg.Release != nil {
			if err := r.cfg.Release(); err != nil {
				return err
			}
		}
		// Symbols must come from the command, not from the gate it replaces.
		waitExec(r.cfg.Launched, 2*time.Second)
	}
	for _, pid := range pids {
		r.attachProcess(uint32(pid))
	}
	if r.cfg.Launched == 0 {
		// Threads already waiting, measured from the window's start,
		// once their unwind tables and Python runtimes are loaded (a
		// launched command has none: it was behind the gate).
		if err := r.src.OpenWaitsInProgress(); err != nil {
			r.warn("warning: waits in progress at attach: %v", err)
		}
	}
	return nil
}

// run is the recording's goroutine: it drains until the recording ends,
// then detaches at once, so the window ends when it should.
func (r *Recording) run(ctx context.Context, pids []int, procs <-chan procEvent) {
	exited := make(chan struct{})
	if r.cfg.Launched == 0 && !r.cfg.LateTargets {
		// A launched command's exit is its front end's to see: it waits
		// for it. Late targets come and go.
		go func() {
			if waitAllExit(ctx, r.done, pids) {
				close(exited)
			}
		}()
	}
	var timeout <-chan time.Time
	if r.cfg.Duration > 0 {
		// Counted from when counting started, not from now: taking the
		// targets' symbols and unwind tables took a while.
		timer := time.NewTimer(time.Until(r.attached.Add(r.cfg.Duration)))
		defer timer.Stop()
		timeout = timer.C
	}
	// Children of a launched command may live less than a drain interval:
	// look for them often, so their files are opened while they exist.
	// Loop mode: new loop threads are sampled from their first iterations on.
	var scan <-chan time.Time
	if r.child != 0 || r.loop != nil {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		scan = t.C
	}
	// Python code objects are read as soon as their stacks appear: a
	// short-lived interpreter may exit before the next drain.
	pyNew := r.watchPython(r.done)
	tick := time.NewTicker(r.cfg.DrainInterval)
	defer tick.Stop()
	why := ""
	for why == "" {
		select {
		case <-ctx.Done():
			why = ReasonInterrupted
		case <-exited:
			why = ReasonExited
		case <-timeout:
			why = ReasonDuration
		case <-r.stop:
			why = r.stopWhy
		case <-scan:
			if r.loop != nil {
				if err := r.loop.poll(r.src); err != nil {
					r.warn("warning: %v", err)
				}
			}
			if r.child == 0 {
				continue
			}
			r.attachChildren()
			r.retryPythons()
			r.refreshUnwind()
		case ev, ok := <-procs:
			if !ok {
				procs = nil
				continue
			}
			r.processEvent(ev)
		case st, ok := <-pyNew:
			if !ok {
				pyNew = nil
				continue
			}
			r.prefetchPython(st)
		case add := <-r.adds:
			add.reply <- r.addTargets(add.pids)
		case reply := <-r.snaps:
			p, err := r.snapshot()
			reply <- snapshot{p, err}
			if err != nil {
				r.err, why = err, "error"
			}
		case <-tick.C:
			if err := r.drain(); err != nil {
				r.err, why = err, "error"
				continue
			}
			if r.cfg.OnDrain != nil {
				r.cfg.OnDrain(r.status())
			}
		}
	}
	// Detach first: the targets stop paying for us at once, and with no
	// program left running the last drain is exact. A recording that
	// reached its duration ends exactly there (the kernel cuts its
	// intervals at that moment), however late the timer fired.
	end := attach.Monotonic()
	if why == ReasonDuration {
		end = min(end, r.src.CountingSince()+r.cfg.Duration)
	}
	if err := r.src.DetachAt(end); err != nil {
		r.warn("detach: %v", err)
	}
	if r.gor != nil {
		if err := r.gor.Detach(); err != nil {
			r.warn("detach goroutines: %v", err)
		}
	}
	r.endMono = end
	r.win.end = r.win.start.Add(end - r.src.CountingSince())
	if !r.win.start.Equal(r.attached) {
		r.win.end = time.Now() // after a snapshot: wall clock for windows
	}
	r.why = why
	close(r.done)
}

// procEvent is a kernel announcement of a followed process, with its
// mappings as watchProcs has them (nil: not read yet). lost: the process
// exec'd and was gone before its new mappings could be read.
type procEvent struct {
	attach.ProcEvent
	proc *symbolize.Process
	lost bool
}

// watchProcs sends the kernel's announcements of followed processes
// (forks, execs, first blocks, exits) to the recording loop, until the
// session closes or the loop ends (done). nil when no children are
// followed. It reads a process's mappings itself, at its first block
// after its fork or exec, when the process is sure to be in /proc and
// to have mapped what its stacks hold: the loop may be busy draining
// for longer than a short-lived child lives (a `sleep 0.01` lives about
// 12 ms). A forked child starts with its parent's mappings (nothing to
// read while it has not exec'd). The Processes are handed to the loop,
// which owns them from then on; this goroutine only Refreshes them (safe
// alongside Locations). known seeds it with those already attached.
func (r *recorder) watchProcs(done <-chan struct{}, known map[uint32]*symbolize.Process) <-chan procEvent {
	if r.child == 0 {
		return nil
	}
	ch := make(chan procEvent, 1024)
	stale := map[uint32]bool{} // exec'd, new mappings not read yet
	go func() {
		defer close(ch)
		// Its own thread, ahead of the targets' in the scheduler's
		// queue: a child blocks for the first time, then exits, often
		// within a few ms. Best effort: without CAP_SYS_NICE it stays.
		runtime.LockOSThread()
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), -10)
		for {
			ev, err := r.src.NextProcEvent()
			if err != nil {
				return
			}
			out := procEvent{ProcEvent: ev}
			p := known[ev.TGID]
			switch ev.Kind {
			case attach.ProcFork:
				if pp := known[ev.Parent]; pp != nil && p == nil {
					p = pp.Forked(int(ev.TGID))
					known[ev.TGID] = p
				}
			case attach.ProcExec:
				stale[ev.TGID] = true
			case attach.ProcBlocked:
				if p != nil {
					// After an exec, the old image's regions that the
					// new one does not overlap are kept: stacks taken
					// before it still resolve.
					_ = p.Refresh()
					if p.Exited() && stale[ev.TGID] {
						out.lost = true
					}
				} else if q, err := r.sym.Attach(int(ev.TGID)); err == nil {
					p = q
					known[ev.TGID] = p
				} else if stale[ev.TGID] {
					out.lost = true
				}
				delete(stale, ev.TGID)
			case attach.ProcExit:
				out.lost = stale[ev.TGID]
				delete(known, ev.TGID)
				delete(stale, ev.TGID)
			}
			out.proc = p
			select {
			case ch <- out:
			case <-done:
				return
			}
		}
	}()
	return ch
}

// Done is closed when counting has stopped by itself (Reason says why) or
// after Stop. The profile is then Stop's to return.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Reason says why counting stopped, once Done is closed: one of the
// Reason constants, or the reason given to Stop.
func (r *Recording) Reason() string {
	<-r.done
	return r.why
}

// Snapshot returns the profile of the window since the previous Snapshot
// (or since counting started) and starts a new window; recording goes on.
// Samples, totals, latency counts, drops and stalls are those of the
// window. Two values are not windowed: a latency row's Max and a loop's
// Max are the largest since counting started when the window holds no
// larger one. It returns ErrEnded once the recording has ended.
func (r *Recording) Snapshot() (*profiles.Profile, error) {
	reply := make(chan snapshot, 1)
	select {
	case r.snaps <- reply:
		s := <-reply
		return s.p, s.err
	case <-r.done:
		return nil, ErrEnded
	}
}

// AddTargets starts recording processes pids from now on (not their
// children: the caller adds those it wants); it needs Config.LateTargets. Processes already recorded are skipped. Their
// waits already in progress are not opened (unlike Start's targets): a
// wait counts from its thread's next switch-out. It returns ErrEnded once
// the recording has ended. Safe from any goroutine.
func (r *Recording) AddTargets(pids []int) error {
	if !r.cfg.LateTargets {
		return errors.New("add targets: recording not started with LateTargets")
	}
	reply := make(chan error, 1)
	select {
	case r.adds <- addTargets{pids, reply}:
		return <-reply
	case <-r.done:
		return ErrEnded
	}
}

// addTargets is AddTargets on the recording's goroutine.
func (r *recorder) addTargets(pids []int) error {
	var errs []error
	for _, pid := range pids {
		if _, ok := r.procs[uint32(pid)]; ok {
			continue
		}
		// Counting first; the symbolizer and unwind tables follow (a
		// stack walked before they load falls back to frame pointers).
		if err := r.src.AddTarget(pid); err != nil {
			errs = append(errs, err)
			continue
		}
		r.attachProcess(uint32(pid))
	}
	return errors.Join(errs...)
}

// Stop ends the recording (reason, e.g. "cmd exited", is kept in the
// profile unless it had already ended by itself), detaches, drains for the
// last time and returns the profile of the last window: the whole
// recording when Snapshot was never called. Its Start and Duration are
// exactly the window counted.
func (r *Recording) Stop(reason string) (*profiles.Profile, error) {
	r.halt(reason)
	<-r.done
	if r.finished {
		return nil, ErrEnded
	}
	r.finished = true
	defer r.sym.Close()
	defer r.flushWarnings()
	if r.err != nil {
		r.src.Close()
		return nil, r.err
	}
	if err := r.drain(); err != nil {
		r.src.Close()
		return nil, err
	}
	if r.loop != nil {
		r.loop.finish(r.endMono)
	}
	drops, derr := r.src.Drops()
	threads, terr := r.src.Threads()
	lat, lerr := r.src.Latencies()
	var gerr error
	if r.gor != nil {
		var gdrops map[string]uint64
		gdrops, gerr = r.gor.Drops()
		for k, n := range gdrops {
			drops[k] = n
		}
		if err := r.gor.Close(); err != nil {
			r.warn("unload goroutines: %v", err)
		}
	}
	r.loadWaiting()
	if err := r.src.Close(); err != nil {
		r.warn("unload: %v", err)
	}
	if err := errors.Join(derr, terr, lerr, gerr); err != nil {
		return nil, err
	}
	p := r.profile(drops, threads, lat, r.why)
	if err := r.sym.KernelErr(); err != nil && r.cfg.KernelStacks {
		r.warn("warning: kernel frames left as addresses: %v", err)
	}
	return p, nil
}

// Close ends the recording without a profile and unloads everything; safe
// after Stop, and more than once. Stop and Close are for one goroutine;
// Snapshot may be called from any.
func (r *Recording) Close() error {
	r.halt("closed")
	<-r.done
	if r.finished {
		return nil
	}
	r.finished = true
	r.sym.Close()
	r.flushWarnings()
	var gerr error
	if r.gor != nil {
		gerr = r.gor.Close()
	}
	return errors.Join(gerr, r.src.Close())
}

func (r *Recording) halt(reason string) {
	if reason == "" {
		reason = "stopped"
	}
	r.stopOnce.Do(func() {
		r.stopWhy = reason
		close(r.stop)
	})
}

// warnCount is one kind of warning (its format) seen more than once.
type warnCount struct {
	held int    // repeats not printed
	last string // the last of them
}

// warn prints a warning the first time its kind (format) comes up; the
// repeats (one per exited child, say) are counted and summed up in one
// line at the end (flushWarnings).
func (r *recorder) warn(format string, args ...any) {
	if r.cfg.Warn == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if w := r.warned[format]; w != nil {
		w.held++
		w.last = msg
		return
	}
	r.warned[format] = &warnCount{}
	r.cfg.Warn(msg)
}

// flushWarnings prints one line per kind of warning that was held back.
func (r *recorder) flushWarnings() {
	if r.cfg.Warn == nil {
		return
	}
	formats := make([]string, 0, len(r.warned))
	for f, w := range r.warned {
		if w.held > 0 {
			formats = append(formats, f)
		}
	}
	sort.Strings(formats)
	for _, f := range formats {
		w := r.warned[f]
		r.cfg.Warn(fmt.Sprintf("%d more like that: last %s", w.held, w.last))
		w.held = 0
	}
}

// ProcessExists is true for a live, non-zombie process.
func ProcessExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	return liveState(string(b))
}
