package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

// record runs `blockprof record`: check everything that can be checked
// before attaching, attach, drain until told to stop, detach, then
// symbolize and write.
func record(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	start := time.Now()
	cfg, err := parseRecordFlags(args, start, stdout)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "blockprof: %v\n", err)
		return exitError
	}

	// Cheap checks first: a bad PID or an unwritable output must not cost
	// an attach, and must leave nothing behind.
	if err := checkTargets(cfg.pids, cfg.tids); err != nil {
		return fail(err)
	}
	if len(cfg.command) > 0 {
		if err := checkCommand(cfg.command); err != nil {
			return fail(err)
		}
	}
	if err := checkPrivileges(); err != nil {
		return fail(err)
	}
	if err := attach.CheckBTF(); err != nil {
		return fail(err)
	}
	out, err := os.OpenFile(cfg.output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fail(fmt.Errorf("cannot write profile: %w", err))
	}
	written := false
	defer func() {
		out.Close()
		if !written {
			os.Remove(cfg.output)
		}
	}()

	r := &recorder{cfg: cfg, stderr: stderr, start: start, procs: map[uint32]*symbolize.Process{},
		agg: map[recordKey]*attach.Record{}, pys: map[uint32]*pyProc{}, pyLocs: map[string][]symbolize.Location{}, unwSig: map[uint32]string{}}
	// The Python frame walker is loaded only when it may find something.
	r.python = !cfg.noPython && (len(cfg.command) > 0 || detectPythons(cfg.pids))
	r.sym = symbolize.New(symbolize.Options{})
	defer r.sym.Close()

	var child *exec.Cmd
	var openGate func() error
	pids := cfg.pids
	if len(cfg.command) > 0 {
		child, openGate, err = startGated(cfg.command, stderr, stderr)
		if err != nil {
			return fail(err)
		}
		pids = []int{child.Process.Pid}
		r.child = uint32(child.Process.Pid)
		defer func() {
			if child.ProcessState == nil { // attach failed: the gate closes, CMD never runs
				child.Process.Kill()
				child.Wait()
			}
		}()
	}

	sess, err := attach.Open(attach.Options{
		PIDs:              pids,
		TIDs:              cfg.tids,
		FollowChildren:    len(cfg.command) > 0,
		MinBlock:          cfg.minBlock,
		MaxBlock:          cfg.maxBlock,
		Preempted:         cfg.preempted,
		NoUserStacks:      !cfg.userStacks(),
		NoKernelStacks:    !cfg.kernelStacks(),
		ExactKernelStacks: cfg.exactK,
		NoRunQueue:        cfg.noRunQ,
		NoTargets:         cfg.noTargets,
		Unwind:            cfg.unwind,
		NoWakers:          cfg.noWakers,
		WakerStacks:       cfg.wakerStacks,
		Syscalls:          cfg.syscallNrs,
		NoSyscall:         cfg.noSyscall,
		Python:            r.python,
		Loop:              loopOptions(cfg),
	})
	if err != nil {
		return fail(err)
	}
	r.sess = sess
	defer sess.Close() // idempotent: also closed explicitly before symbolizing
	if cfg.loopMode() {
		r.loop = newLoopTracker(cfg.stall)
	}
	r.attached = time.Now()

	// What ends the recording.
	exited := make(chan string, 1)
	if child != nil {
		// The gate's own threads die at exec, some of them after the
		// kernel starts counting the command: ignore them by TID.
		r.ignoreTIDs = gateThreads(child.Process.Pid)
		if err := openGate(); err != nil {
			return fail(fmt.Errorf("start %s: %w", cfg.command[0], err))
		}
		// Symbols must come from CMD, not from the gate it replaces.
		waitExec(child.Process.Pid, 2*time.Second)
	}
	// Symbolization data is taken now, while the targets live.
	for _, pid := range pids {
		r.attachProcess(uint32(pid))
	}
	if child == nil {
		// Threads that were already waiting: with the stacks just
		// loaded, measured from the window's start.
		if err := sess.OpenWaitsInProgress(); err != nil {
			fmt.Fprintf(stderr, "blockprof: warning: %v\n", err)
		}
	}
	if cfg.readyFile != "" {
		if err := os.WriteFile(cfg.readyFile, nil, 0o644); err != nil {
			return fail(fmt.Errorf("create ready file: %w", err))
		}
	}
	if child != nil {
		go func() {
			child.Wait()
			exited <- fmt.Sprintf("%s exited (%s)", cfg.command[0], child.ProcessState)
		}()
	} else {
		go func() {
			waitAllExit(ctx, cfg.pids)
			exited <- "target exited"
		}()
	}
	var timeout <-chan time.Time
	if cfg.duration > 0 {
		timer := time.NewTimer(cfg.duration)
		defer timer.Stop()
		timeout = timer.C
	}

	// Children of a launched command may live less than a drain interval:
	// look for them often, so their files are opened while they exist.
	// Loop mode: new loop threads are sampled from their first iterations on.
	var scan <-chan time.Time
	if child != nil || r.loop != nil {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		scan = t.C
	}

	// Python code objects are read as soon as their stacks appear: a
	// short-lived interpreter may exit before the next drain.
	pyNew := r.watchPython()

	status := newStatusLine(stderr, cfg.quiet)
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	why := ""
	for why == "" {
		select {
		case <-ctx.Done():
			why = "interrupted"
		case why = <-exited:
		case <-timeout:
			why = "duration reached"
		case <-scan:
			if r.loop != nil {
				if err := r.loop.poll(sess); err != nil {
					fmt.Fprintf(stderr, "blockprof: warning: %v\n", err)
				}
			}
			if child == nil {
				continue
			}
			r.attachChildren()
			r.retryPythons()
			r.refreshUnwind()
		case st, ok := <-pyNew:
			if !ok {
				pyNew = nil
				continue
			}
			r.prefetchPython(st)
		case <-tick.C:
			if err := r.drain(); err != nil {
				status.clear()
				return fail(err)
			}
			status.show(r.statusText())
		}
	}
	status.clear()

	// Detach first: the targets stop paying for us at once, and with no
	// program left running the last drain is exact.
	if err := sess.Detach(); err != nil {
		fmt.Fprintf(stderr, "blockprof: detach: %v\n", err)
	}
	r.end = time.Now()
	endMono := attach.Monotonic()
	if err := r.drain(); err != nil {
		return fail(err)
	}
	if r.loop != nil {
		r.loop.finish(endMono)
	}
	drops, derr := sess.Drops()
	threads, terr := sess.Threads()
	lat, lerr := sess.Latencies()
	if err := sess.Close(); err != nil {
		fmt.Fprintf(stderr, "blockprof: unload: %v\n", err)
	}
	if err := errors.Join(derr, terr, lerr); err != nil {
		return fail(err)
	}

	prof := r.profile(drops, threads, lat, why, args)
	if err := r.sym.KernelErr(); err != nil && cfg.kernelStacks() {
		fmt.Fprintf(stderr, "blockprof: warning: kernel frames left as addresses: %v\n", err)
	}
	if err := writeProfile(out, cfg.format, withoutIdle(prof, cfg.idle)); err != nil {
		return fail(fmt.Errorf("write %s: %w", cfg.output, err))
	}
	if err := out.Close(); err != nil {
		return fail(fmt.Errorf("write %s: %w", cfg.output, err))
	}
	written = true
	if !cfg.quiet {
		file := cfg.output
		if cfg.format != "pprof" {
			file = ""
		}
		profiles.WriteSummary(stdout, prof, profiles.SummaryOptions{Top: cfg.top, File: file})
		if cfg.format != "pprof" {
			fmt.Fprintf(stdout, "folded stacks written to %s\n", cfg.output)
		}
	}
	if child != nil && child.ProcessState != nil && !child.ProcessState.Success() {
		// Mirror the command's failure, as `time` and `perf record` do.
		if code := child.ProcessState.ExitCode(); code > 0 {
			return code
		}
	}
	return exitOK
}

// loopOptions are the session's loop-mode options (nil: off).
func loopOptions(cfg *recordConfig) *attach.LoopOptions {
	if !cfg.loopMode() {
		return nil
	}
	return &attach.LoopOptions{Stall: cfg.stall, Threads: cfg.loopThreads, Auto: cfg.loop, SampleHz: cfg.loopHz}
}

func writeProfile(w io.Writer, format string, p *profiles.Profile) error {
	if format == "folded" {
		return profiles.WriteFolded(w, p, profiles.FoldedOptions{})
	}
	return profiles.WritePprof(w, p, profiles.PprofOptions{})
}

// withoutIdle is the profile to write: idle waits are left out unless
// asked for (the summary still reports their total).
func withoutIdle(p *profiles.Profile, keep bool) *profiles.Profile {
	if keep {
		return p
	}
	out := *p
	out.Samples = nil
	var n int64
	for _, s := range p.Samples {
		if s.Kind == profiles.KindIdle {
			n += s.Count
			continue
		}
		out.Samples = append(out.Samples, s)
	}
	if n > 0 {
		out.Comments = append(append([]string{}, p.Comments...),
			fmt.Sprintf("%d idle intervals left out (record with --idle to keep them)", n))
	}
	return &out
}

// gateThreads lists the threads of the exec gate other than its leader.
func gateThreads(pid int) map[uint32]bool {
	out := map[uint32]bool{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		var tid uint32
		if _, err := fmt.Sscan(t.Name(), &tid); err == nil && int(tid) != pid {
			out[tid] = true
		}
	}
	return out
}

// waitExec waits until pid no longer runs our own executable (the exec
// gate has exec'ed the command), or the timeout passes.
func waitExec(pid int, timeout time.Duration) {
	self, _ := os.Readlink("/proc/self/exe")
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if now, err := os.Readlink(exe); err != nil || now != self {
			return
		}
	}
}

// waitAllExit returns once none of pids is alive (or ctx ends).
func waitAllExit(ctx context.Context, pids []int) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		alive := false
		for _, p := range pids {
			alive = alive || processExists(p)
		}
		if !alive {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkPrivileges fails early, with one line, when loading BPF cannot work.
func checkPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // let the kernel decide
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			fmt.Sscanf(strings.TrimSpace(hex), "%x", &caps)
			const sysAdmin, perfmon, bpf = 21, 38, 39
			if caps&(1<<sysAdmin) != 0 || (caps&(1<<perfmon) != 0 && caps&(1<<bpf) != 0) {
				return nil
			}
		}
	}
	return attach.ErrPermission
}
