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
// (python_walk) and without it (--no-python: python_native). The
// difference is what reading the Python frames costs per switch-out.
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
		for _, mode := range []struct {
			name  string
			extra []string
		}{{"python_walk", nil}, {"python_native", []string{"--no-python"}}} {
			w := testutil.Start(b, py, script, "-d", fmt.Sprint(seconds))
			w.Ready(b)
			prof := startBlockprofWith(b, w.PID(), mode.extra...)
			w.Go(b)
			time.Sleep(500 * time.Millisecond)
			before, err := progStatsOf(prof.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Duration((seconds - 1) * float64(time.Second)))
			after, err := progStatsOf(prof.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Wait(30 * time.Second); err != nil {
				b.Fatal(err)
			}
			prof.waitExit(b)
			a, bf := after["bprof_switch"], before["bprof_switch"]
			n := a.runCnt - bf.runCnt
			if n <= 0 {
				b.Fatalf("%s: bprof_switch did not run", mode.name)
			}
			ns := float64(a.runTimeNs-bf.runTimeNs) / float64(n)
			rate, _ := testutil.RoundtripsPerSec(w.Stdout())
			b.Logf("%s: %.0f ns/event over %d events (pingpong %.0f rt/s)", mode.name, ns, n, rate)
			b.ReportMetric(ns, mode.name+"_switch_ns/event")
		}
	}
}
