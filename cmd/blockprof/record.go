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
	"blockprof/internal/engine"
	"blockprof/profiles"
)

// record runs `blockprof record`: check everything that can be checked
// before attaching, start the engine, wait until the recording ends (the
// engine's own reasons: -d, Ctrl-C, every target gone; or the launched
// command's exit), then write the profile and the first screen.
func record(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseRecordFlags(args, time.Now(), stdout)
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

	var child *exec.Cmd
	var release func() error
	if len(cfg.command) > 0 {
		var openGate func() error
		child, openGate, err = startGated(cfg.command, stderr, stderr)
		if err != nil {
			return fail(err)
		}
		release = func() error {
			if err := openGate(); err != nil {
				return fmt.Errorf("start %s: %w", cfg.command[0], err)
			}
			return nil
		}
		defer func() {
			if child.ProcessState == nil { // attach failed: the gate closes, CMD never runs
				child.Process.Kill()
				child.Wait()
			}
		}()
	}

	status := newStatusLine(stderr, cfg.quiet)
	ecfg := engineConfig(cfg, args)
	if child != nil {
		ecfg.Launched, ecfg.Release = child.Process.Pid, release
	}
	ecfg.Warn = func(msg string) { fmt.Fprintf(stderr, "blockprof: %s\n", msg) }
	ecfg.OnDrain = func(s engine.Status) { status.show(statusText(s)) }
	rec, err := engine.Start(ctx, ecfg)
	if err != nil {
		return fail(err)
	}
	defer rec.Close()
	if cfg.readyFile != "" {
		if err := os.WriteFile(cfg.readyFile, nil, 0o644); err != nil {
			return fail(fmt.Errorf("create ready file: %w", err))
		}
	}

	// What ends the recording: the engine itself (duration, interrupt,
	// every target gone), or the launched command's exit.
	exited := make(chan string, 1)
	if child != nil {
		go func() {
			child.Wait()
			exited <- fmt.Sprintf("%s exited (%s)", cfg.command[0], child.ProcessState)
		}()
	}
	why := ""
	select {
	case <-rec.Done():
	case why = <-exited:
	}
	prof, err := rec.Stop(why)
	status.clear()
	if err != nil {
		return fail(err)
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

// engineConfig is what the engine needs of a record command line.
func engineConfig(cfg *recordConfig, args []string) engine.Config {
	return engine.Config{
		PIDs:              cfg.pids,
		TIDs:              cfg.tids,
		Duration:          cfg.duration,
		DrainInterval:     cfg.interval,
		MinBlock:          cfg.minBlock,
		MaxBlock:          cfg.maxBlock,
		Preempted:         cfg.preempted,
		UserStacks:        cfg.userStacks(),
		KernelStacks:      cfg.kernelStacks(),
		ExactKernelStacks: cfg.exactK,
		NoRunQueue:        cfg.noRunQ,
		NoTargets:         cfg.noTargets,
		NoWakers:          cfg.noWakers,
		WakerStacks:       cfg.wakerStacks,
		Goroutines:        cfg.goroutines,
		Syscalls:          cfg.syscallNrs,
		NoSyscall:         cfg.noSyscall,
		Target:            cfg.target,
		TargetFrames:      cfg.targetFrames,
		Unwind:            cfg.unwind,
		Python:            !cfg.noPython,
		Loop:              engine.LoopConfig{Auto: cfg.loop, Threads: cfg.loopThreads, Stall: cfg.stall, SampleHz: cfg.loopHz},
		Comments:          []string{"blockprof record " + strings.Join(args, " ")},
	}
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
