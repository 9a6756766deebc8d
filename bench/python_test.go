package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// BenchmarkPythonSwitchOut: kernel-measured run time of bprof_switch per
// invocation while a Python pingpong (two threads, 9 Python frames deep,
// bouncing a byte over pipes) is the target, with the frame walker
// (python_walk) and without it (--no-python: python_native), and the
// pingpong's round trips against an unprofiled run (python_off) as ratios.
// The difference is what reading the Python frames costs per switch-out.
// The ratios come out above 1 (1.1-1.9 here): two threads handing the GIL
// back and forth over pipes convoy less when each switch-out takes a few
// microseconds longer, so for a GIL-bound pingpong the per-event cost is
// the number to read, not the throughput.
func BenchmarkPythonSwitchOut(b *testing.B) {
	testutil.RequireRoot(b)
	blockprof(b)
	if _, err := os.Stat(bpftoolPath); err != nil {
		b.Skipf("no %s (Debian package bpftool)", bpftoolPath)
	}
	var py string
	for _, p := range testutil.Pythons() {
		if _, err := os.Stat(p.Path); err == nil {
			py = p.Path
			break
		}
	}
	if py == "" {
		b.Skip("no CPython 3.11-3.13 installed")
	}
	enableBPFStats(b)
	script := filepath.Join(testutil.RepoRoot(b), "testdata/workloads/python/pingpong.py")
	const seconds = 3.0
	b.ResetTimer()
	for range b.N {
		base := 0.0
		for _, mode := range []struct {
			name  string
			extra []string
			off   bool // no profiler: the baseline of the ratios
		}{{"python_off", nil, true}, {"python_walk", nil, false}, {"python_native", []string{"--no-python"}, false}} {
			w := testutil.Start(b, py, script, "-d", fmt.Sprint(seconds))
			w.Ready(b)
			var prof *profiler
			if !mode.off {
				prof = startBlockprofWith(b, w.PID(), mode.extra...)
			}
			w.Go(b)
			var before, after map[string]progStats
			var err error
			time.Sleep(500 * time.Millisecond)
			if prof != nil {
				if before, err = progStatsOf(prof.cmd.Process.Pid); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(time.Duration((seconds - 1) * float64(time.Second)))
			if prof != nil {
				if after, err = progStatsOf(prof.cmd.Process.Pid); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.Wait(30 * time.Second); err != nil {
				b.Fatal(err)
			}
			rate, _ := testutil.RoundtripsPerSec(w.Stdout())
			if mode.off {
				base = rate
				b.Logf("%s: pingpong %.0f rt/s", mode.name, rate)
				continue
			}
			prof.waitExit(b)
			a, bf := after["bprof_switch"], before["bprof_switch"]
			n := a.runCnt - bf.runCnt
			if n <= 0 {
				b.Fatalf("%s: bprof_switch did not run", mode.name)
			}
			ns := float64(a.runTimeNs-bf.runTimeNs) / float64(n)
			b.Logf("%s: %.0f ns/event over %d events (pingpong %.0f rt/s, %.3f of unprofiled)", mode.name, ns, n, rate, rate/base)
			b.ReportMetric(ns, mode.name+"_switch_ns/event")
			if base > 0 {
				b.ReportMetric(rate/base, mode.name+"_ratio")
			}
		}
	}
}
