package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// -bound-for sets how long TestMemoryBound records; `make soak` runs it
// for much longer.
var boundFor = flag.Duration("bound-for", 45*time.Second, "how long TestMemoryBound records")

// rssMB reads a process's resident set in MiB (0 once it is gone), and
// its open fds.
func rssMB(pid int) (rss float64, fds int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(l, "VmRSS: %f kB", &kb); err == nil {
			rss = kb / 1024
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rss, len(ents)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// Recording a process that blocks through 16k distinct call paths at
// ~10k+ intervals/s: once every path is seen, blockprof's memory stops
// growing (the last third of its RSS samples within 10% + 16 MiB of the
// middle third), and so do its open fds.
func TestMemoryBound(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("records for -bound-for (45 s)")
	}
	root := testutil.RepoRoot(t)
	wl := testutil.BuildC(t, filepath.Join(root, "testdata/workloads/manystacks/manystacks.c"),
		"-O2", "-fno-omit-frame-pointer", "-pthread")
	w := exec.Command(wl, "-t", "4", "-d", "12")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	// A churn of short-lived children beside it would change nothing
	// here: -p follows no children. TestChurn covers them.
	out := filepath.Join(t.TempDir(), "bound.pb.gz")
	cmd := exec.Command(blockprofBin(t), "record", "-q", "-p", fmt.Sprint(w.Process.Pid),
		"-d", boundFor.String(), "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var rss, fds []float64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Sampled while recording, not while the profile is written at the end.
	for deadline := time.Now().Add(*boundFor - 2*time.Second); time.Now().Before(deadline); <-tick.C {
		r, f := rssMB(cmd.Process.Pid)
		rss = append(rss, r)
		fds = append(fds, float64(f))
		if testing.Verbose() {
			t.Logf("%3ds rss %.0f MiB fds %d", len(rss), r, f)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, stderr.String())
	}
	n := len(rss) / 3
	if n < 3 {
		t.Fatalf("only %d samples", len(rss))
	}
	mid, last := mean(rss[n:2*n]), mean(rss[2*n:])
	t.Logf("rss: middle third %.0f MiB, last third %.0f MiB (max %.0f); fds %v .. %v", mid, last, maxOf(rss), fds[n], fds[len(fds)-1])
	if last > mid*1.10+16 {
		t.Errorf("RSS still growing after warm-up: middle third %.0f MiB, last third %.0f MiB", mid, last)
	}
	if fds[len(fds)-1] > fds[n]+8 {
		t.Errorf("open fds grew from %v to %v", fds[n], fds[len(fds)-1])
	}
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// `record -- script` whose script starts ~50 short-lived children a
// second, C (sleep) and Python: no child is lost for want of room in the
// kernel's maps, no warning repeats, and every child's own binary is
// symbolized (no bare address in the frames of the children's code).
// Mappings are read at each child's first block after its fork or exec
// (watchProcs); a child that blocks once, briefly, and exits within about
// a millisecond may still be gone by then: those intervals count as
// user_symbols_exited_unread, bounded here at 3 % (1-2 % on a busy
// 2-CPU VM where python3 is a pyenv shell shim forking ~400 times a
// second; before, ~9 % were lost as user_symbols_process_gone).
func TestChurn(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("records for ~10 s")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("needs python3")
	}
	script := filepath.Join(t.TempDir(), "churn.sh")
	err := os.WriteFile(script, []byte(`#!/bin/sh
i=0
while [ $i -lt 80 ]; do
  for j in 1 2 3 4 5 6 7 8; do sleep 0.01 & done
  python3 -c 'import time; time.sleep(0.02)' &
  wait
  i=$((i+1))
done
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	r := startRecord(t, "--", script)
	// Detail, not time: a shell function recursing deeper than the
	// unwinder's limit (a pyenv shim) is marked truncated.
	r.allow = map[string]bool{"user_symbols_exited_unread": true, "user_stack_truncated": true}
	p := r.wait(t)
	var intervals int64
	for _, s := range p.Sample {
		intervals += s.Value[0]
	}
	unread := r.drops["user_symbols_exited_unread"]
	t.Logf("%d intervals, %d of them of children exited before their mappings were read", intervals, unread)
	if float64(unread) > 0.03*float64(intervals) {
		t.Errorf("%d of %d intervals' user frames unread (children gone before their first block was seen): more than 3 %%", unread, intervals)
	}
	stderr := r.stderr.String()
	if strings.Contains(stderr, "targets_full") {
		t.Errorf("children lost (targets_full):\n%s", stderr)
	}
	seen := map[string]int{}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "warning") || strings.Contains(l, "unwind tables for") || strings.Contains(l, "add Python") {
			// Same text once the numbers are gone.
			seen[strings.Map(func(c rune) rune {
				if c >= '0' && c <= '9' {
					return -1
				}
				return c
			}, l)]++
		}
	}
	for l, n := range seen {
		if n > 1 {
			t.Errorf("warning repeated %d times: %s", n, l)
		}
	}
	pids := map[int64]bool{}
	bare := 0
	for _, s := range p.Sample {
		if len(s.NumLabel["pid"]) > 0 {
			pids[s.NumLabel["pid"][0]] = true
		}
		for _, loc := range s.Location {
			m := loc.Mapping
			if m == nil || strings.HasPrefix(m.File, "[") {
				continue
			}
			if (strings.HasSuffix(m.File, "/sleep") || strings.Contains(m.File, "python3")) && len(loc.Line) == 0 && !m.HasFunctions {
				bare++
			}
		}
	}
	if len(pids) < 300 {
		t.Errorf("only %d processes in the profile; ~720 were started", len(pids))
	}
	if bare > 0 {
		t.Errorf("%d frames of the children's binaries left as addresses", bare)
	}
}
