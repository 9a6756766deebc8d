package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

const (
	// pingpongSeconds is one throughput measurement; rounds of all
	// positions alternate so slow drift of the machine hits each alike.
	pingpongSeconds = 2
	overheadRounds  = 5
	attachRuns      = 10
	offcputimePath  = "/usr/sbin/offcputime"
	bpftoolPath     = "/usr/sbin/bpftool"
)

// blockprof builds the CLI (once per benchmark process, cached by
// testutil); $BLOCKPROF_BIN, if set, is used instead, to measure another
// build. Until cmd/blockprof builds, the benchmarks that need it skip.
func blockprof(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("BLOCKPROF_BIN"); p != "" {
		return p
	}
	path, err := testutil.TryBuildGo(filepath.Join(testutil.RepoRoot(b), "cmd", "blockprof"))
	if err != nil {
		b.Skipf("cmd/blockprof does not build yet, so there is nothing to measure: %v", err)
	}
	return path
}

// profiler is a running profiler process.
type profiler struct {
	name   string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{}
	start  time.Time
	ready  time.Duration // from exec to attached
}

// startBlockprof runs `blockprof record -p PID` and waits for its ready file.
func startBlockprof(b *testing.B, pid int) *profiler {
	return startBlockprofWith(b, pid)
}

// startBlockprofNoRunQueue is blockprof without the wakeup hook.
func startBlockprofNoRunQueue(b *testing.B, pid int) *profiler {
	return startBlockprofWith(b, pid, "--no-runqueue")
}

func startBlockprofWith(b *testing.B, pid int, extra ...string) *profiler {
	b.Helper()
	dir := b.TempDir()
	ready := filepath.Join(dir, "ready")
	p := &profiler{name: "blockprof"}
	args := append([]string{"record", "-p", strconv.Itoa(pid),
		"-d", "120s", "-o", filepath.Join(dir, "out.pb.gz"), "--ready-file", ready, "-q"}, extra...)
	p.cmd = exec.Command(blockprof(b), args...)
	p.run(b, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
	return p
}

// startOffcputime runs libbpf-tools' offcputime on pid. It has no ready
// signal: it is attached once it holds a BPF link fd.
func startOffcputime(b *testing.B, pid int) *profiler {
	b.Helper()
	p := &profiler{name: "offcputime"}
	p.cmd = exec.Command(offcputimePath, "-p", strconv.Itoa(pid))
	p.run(b, func() bool { return len(bpfFDs(p.cmd.Process.Pid, "anon_inode:bpf_link")) > 0 })
	return p
}

func (p *profiler) run(b *testing.B, attached func() bool) {
	b.Helper()
	p.cmd.Stderr = &p.stderr
	p.exited = make(chan struct{})
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	b.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for !attached() {
		select {
		case <-p.exited:
			b.Fatalf("%s exited before attaching: %v\n%s", p.name, p.cmd.ProcessState, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not attached after 30s\n%s", p.name, p.stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
	p.ready = time.Since(p.start)
}

// stop ends the profiler with SIGINT unless it already exited (a profiler
// whose target exited stops by itself) and returns its peak RSS in bytes.
func (p *profiler) stop(b *testing.B) int64 {
	b.Helper()
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		b.Fatalf("%s did not exit 60s after SIGINT\n%s", p.name, p.stderr.String())
	}
	if !p.cmd.ProcessState.Success() {
		b.Fatalf("%s: %v\n%s", p.name, p.cmd.ProcessState, p.stderr.String())
	}
	return p.cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024 // Linux: KiB
}

// waitExit waits for a profiler whose target has exited to stop by itself,
// as blockprof's contract says it does.
func (p *profiler) waitExit(b *testing.B) int64 {
	b.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		b.Errorf("%s still running 30s after its target exited", p.name)
	}
	return p.stop(b)
}

// dummy is a process that only sleeps: a target that never blocks again,
// so a profiler attached to it pays only the cost of ignoring the others.
func dummy(b *testing.B) int {
	b.Helper()
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// pingpong runs one pingpong measurement of seconds; before its measured
// phase, attach(pid) may start a profiler. It returns round trips/s and
// context switches/s.
func pingpong(b *testing.B, bin string, seconds float64, attach func(pid int)) (rate, switches float64) {
	b.Helper()
	w := testutil.Start(b, bin, "-d", fmt.Sprint(seconds))
	w.Ready(b)
	if attach != nil {
		attach(w.PID())
	}
	w.Go(b)
	if _, err := w.Wait(time.Duration(seconds*float64(time.Second)) + 30*time.Second); err != nil {
		b.Fatal(err)
	}
	rate, err := testutil.RoundtripsPerSec(w.Stdout())
	if err != nil {
		b.Fatal(err)
	}
	switches, err = testutil.StdoutValue(w.Stdout(), "ctxt_switches_per_sec")
	if err != nil {
		b.Fatal(err)
	}
	return rate, switches
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkPingPongOverhead: throughput of two threads bouncing a byte on
// one CPU (two context switches per round trip), with no profiler, with a
// profiler attached to it, and with a profiler attached to another process.
// Positions alternate within each round (in a rotating order) and ratios
// are medians of per-round ratios, so drift does not bias one position.
func BenchmarkPingPongOverhead(b *testing.B) {
	testutil.RequireRoot(b)
	blockprof(b)
	pp := testutil.BuildC(b, "pingpong/pingpong.c", "-O2")
	other := dummy(b)

	// Metric names: blockprof's are bare ("ratio_attached"), offcputime's
	// carry its name ("offcputime_ratio_attached").
	type position struct {
		tool     string // "" for no profiler
		prefix   string
		where    string // "attached" (to the pingpong) or "other"
		start    func(b *testing.B, pid int) *profiler
		rates    []float64
		ratios   []float64
		switches []float64
		maxRSS   int64
	}
	positions := []*position{
		{},
		{tool: "blockprof", where: "attached", start: startBlockprof},
		{tool: "blockprof", where: "other", start: startBlockprof},
		// --no-runqueue: one program instead of two on every switch.
		{tool: "blockprof", prefix: "norunq_", where: "other", start: startBlockprofNoRunQueue},
	}
	if _, err := os.Stat(offcputimePath); err == nil {
		positions = append(positions,
			&position{tool: "offcputime", prefix: "offcputime_", where: "attached", start: startOffcputime},
			&position{tool: "offcputime", prefix: "offcputime_", where: "other", start: startOffcputime})
	} else {
		b.Logf("no %s (Debian package libbpf-tools): offcputime positions skipped", offcputimePath)
	}

	b.ResetTimer()
	for range b.N {
		for round := range overheadRounds {
			base := 0.0
			for i := range positions {
				pos := positions[(i+round)%len(positions)]
				var prof *profiler
				attach := func(pid int) {
					if pos.start == nil {
						return
					}
					if pos.where == "other" {
						pid = other
					}
					prof = pos.start(b, pid)
				}
				rate, sw := pingpong(b, pp, pingpongSeconds, attach)
				if prof != nil {
					var rss int64
					if pos.where == "attached" && pos.tool == "blockprof" {
						rss = prof.waitExit(b)
					} else {
						rss = prof.stop(b)
					}
					pos.maxRSS = max(pos.maxRSS, rss)
				}
				pos.rates = append(pos.rates, rate)
				pos.switches = append(pos.switches, sw)
				if pos.tool == "" {
					base = rate
				}
				b.Logf("round %d %-10s %-8s %8.0f round trips/s %8.0f switches/s",
					round, pos.tool, pos.where, rate, sw)
			}
			for _, pos := range positions {
				pos.ratios = append(pos.ratios, pos.rates[len(pos.rates)-1]/base)
			}
		}
	}
	b.StopTimer()

	rss := map[string]int64{}
	for _, pos := range positions {
		if pos.tool == "" {
			b.ReportMetric(median(pos.rates), "rt/s")
			b.ReportMetric(median(pos.switches), "ctxsw/s")
			continue
		}
		b.ReportMetric(median(pos.rates), pos.prefix+pos.where+"_rt/s")
		b.ReportMetric(median(pos.ratios), pos.prefix+"ratio_"+pos.where)
		rss[pos.prefix] = max(rss[pos.prefix], pos.maxRSS)
	}
	for prefix, v := range rss {
		b.ReportMetric(float64(v)/(1<<20), prefix+"peak_rss_MiB")
	}
}

// BenchmarkAttach: from exec of `blockprof record -p PID` to its ready file
// (BPF loaded, attached and counting), over attachRuns runs.
func BenchmarkAttach(b *testing.B) {
	testutil.RequireRoot(b)
	blockprof(b)
	target := dummy(b)
	var ms []float64
	var rss int64
	b.ResetTimer()
	for range b.N {
		for range attachRuns {
			p := startBlockprof(b, target)
			ms = append(ms, float64(p.ready)/1e6)
			rss = max(rss, p.stop(b))
		}
	}
	b.StopTimer()
	b.Logf("attach times (ms): %.1f", ms)
	b.ReportMetric(median(ms), "attach_p50_ms")
	b.ReportMetric(slices.Max(ms), "attach_max_ms")
	b.ReportMetric(float64(rss)/(1<<20), "idle_peak_rss_MiB")
}

// BenchmarkBPFEventCost: kernel-measured run time per invocation of each
// BPF program a profiler holds (kernel.bpf_stats_enabled), while pingpong
// runs: with the profiler on the pingpong (target: the full path of every
// switch) and on a sleeping dummy (other: the early exit every other
// thread on the machine pays).
func BenchmarkBPFEventCost(b *testing.B) {
	testutil.RequireRoot(b)
	blockprof(b)
	if _, err := os.Stat(bpftoolPath); err != nil {
		b.Skipf("no %s (Debian package bpftool)", bpftoolPath)
	}
	enableBPFStats(b)
	pp := testutil.BuildC(b, "pingpong/pingpong.c", "-O2")

	type tool struct {
		name  string
		start func(*testing.B, int) *profiler
	}
	tools := []tool{
		{"blockprof", startBlockprof},
		// What resolving targets and wakers adds: the same without them.
		{"blockprof_bare", func(b *testing.B, pid int) *profiler {
			return startBlockprofWith(b, pid, "--no-targets", "--no-wakers")
		}},
		// What .eh_frame unwinding costs against frame pointers alone.
		{"blockprof_fp", func(b *testing.B, pid int) *profiler {
			return startBlockprofWith(b, pid, "--unwind=false")
		}},
	}
	if _, err := os.Stat(offcputimePath); err == nil {
		tools = append(tools, tool{"offcputime", startOffcputime})
	}
	const seconds = 3.0
	other := dummy(b)
	b.ResetTimer()
	for range b.N {
		for _, tl := range tools {
			for _, target := range []bool{true, false} {
				where := map[bool]string{true: "target", false: "other"}[target]
				var prof *profiler
				var before, after map[string]progStats
				var errBefore, errAfter error
				done := make(chan struct{})
				attach := func(pid int) {
					if !target {
						pid = other
					}
					prof = tl.start(b, pid)
					// Sample inside the measured phase, away from its edges.
					go func() {
						defer close(done)
						time.Sleep(500 * time.Millisecond)
						before, errBefore = progStatsOf(prof.cmd.Process.Pid)
						time.Sleep(time.Duration((seconds - 1) * float64(time.Second)))
						after, errAfter = progStatsOf(prof.cmd.Process.Pid)
					}()
				}
				rate, _ := pingpong(b, pp, seconds, attach)
				<-done
				prof.stop(b)
				if errBefore != nil || errAfter != nil {
					b.Fatal(errBefore, errAfter)
				}
				if len(after) == 0 {
					b.Fatalf("%s holds no BPF programs", tl.name)
				}
				for name, a := range after {
					bf := before[name]
					n := a.runCnt - bf.runCnt
					if n <= 0 {
						b.Logf("%s %s %s: no runs", tl.name, where, name)
						continue
					}
					ns := float64(a.runTimeNs-bf.runTimeNs) / float64(n)
					evs := float64(n) / (seconds - 1)
					b.Logf("%s %s %s: %.0f ns/event, %.0f events/s (pingpong %.0f rt/s)", tl.name, where, name, ns, evs, rate)
					b.ReportMetric(ns, fmt.Sprintf("%s_%s_%s_ns/event", tl.name, where, name))
				}
			}
		}
	}
}

// enableBPFStats turns on kernel.bpf_stats_enabled for the benchmark and
// restores the previous value after.
func enableBPFStats(b *testing.B) {
	b.Helper()
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		b.Skipf("cannot read %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		b.Fatalf("enable BPF stats: %v", err)
	}
	b.Cleanup(func() {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			b.Errorf("restore %s: %v", path, err)
		}
	})
}

type progStats struct {
	id        int
	runTimeNs int64
	runCnt    int64
}

// progStatsOf reads, through bpftool, the run statistics of the BPF
// programs that process pid holds open, by program name.
func progStatsOf(pid int) (map[string]progStats, error) {
	ids := map[int]bool{}
	for _, fd := range bpfFDs(pid, "anon_inode:bpf-prog") {
		if id := fdinfoInt(pid, fd, "prog_id"); id > 0 {
			ids[id] = true
		}
	}
	out, err := exec.Command(bpftoolPath, "prog", "show", "-j").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %v", err)
	}
	var progs []struct {
		ID        int    `json:"id"`
		Name      string `json:"name"`
		RunTimeNs int64  `json:"run_time_ns"`
		RunCnt    int64  `json:"run_cnt"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("bpftool prog show -j: %v", err)
	}
	stats := map[string]progStats{}
	for _, p := range progs {
		if ids[p.ID] {
			stats[p.Name] = progStats{p.ID, p.RunTimeNs, p.RunCnt}
		}
	}
	return stats, nil
}

// bpfFDs lists pid's fds whose link target is kind ("anon_inode:bpf-prog",
// "anon_inode:bpf_link", ...).
func bpfFDs(pid int, kind string) []int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var fds []int
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == kind {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				fds = append(fds, fd)
			}
		}
	}
	return fds
}

// fdinfoInt reads one numeric field of /proc/PID/fdinfo/FD, or -1.
func fdinfoInt(pid, fd int, key string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return -1
}
