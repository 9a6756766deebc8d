package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// -soak-for runs TestServeSoak for that long; `make soak` asks for 10
// minutes. Without it the soak is not run: it is a manual check of long
// runs, not part of the suite.
var soakFor = flag.Duration("soak-for", 0, "how long TestServeSoak runs blockprof serve (0: skip; make soak: 10m)")

// blockprof serve for -soak-for on a cgroup holding a high-cardinality
// workload (16k blocking call paths) and a churn of short-lived children
// (~50 a second, C and Python), with 15 s windows: after warm-up its
// resident memory and open fds stay flat.
func TestServeSoak(t *testing.T) {
	if *soakFor == 0 {
		t.Skip("a manual soak: make soak (or -soak-for DURATION)")
	}
	testutil.RequireRoot(t)
	cgroot := cgroup2Root(t)
	cg := filepath.Join(cgroot, fmt.Sprintf("blockprof-soak-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	root := testutil.RepoRoot(t)
	many := testutil.BuildC(t, filepath.Join(root, "testdata/workloads/manystacks/manystacks.c"),
		"-O2", "-fno-omit-frame-pointer", "-pthread")
	churn := filepath.Join(t.TempDir(), "churn.sh")
	if err := os.WriteFile(churn, []byte(`#!/bin/sh
while :; do
  for j in 1 2 3 4 5 6 7 8; do sleep 0.01 & done
  python3 -c 'import time; time.sleep(0.02)' &
  wait
done
`), 0o755); err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	for _, c := range []*exec.Cmd{
		exec.Command(many, "-t", "4", "-d", "12"), // 4 threads, 2^12 paths each; runs until killed
		exec.Command(churn),
	} {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, c)
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(fmt.Sprint(c.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range procs {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			c.Wait()
		}
		// The cgroup can go once its processes have.
		for i := 0; i < 100 && os.Remove(cg) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})

	s := startServe(t, "--cgroup", cg, "--window", "15s")
	var rss, fds []float64
	for deadline := time.Now().Add(*soakFor); time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		r, f := rssMB(s.cmd.Process.Pid)
		rss = append(rss, r)
		fds = append(fds, float64(f))
		_, m := s.get(t, "/metrics")
		t.Logf("%4ds rss %.0f MiB fds %d; %s", 5*len(rss), r, f, metric(string(m), "blockprof_intervals_total"))
	}
	_, metrics := s.get(t, "/metrics")
	for _, l := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(l, "blockprof_windows_total") || strings.HasPrefix(l, "blockprof_intervals_total") ||
			strings.HasPrefix(l, "blockprof_drops_total") || strings.HasPrefix(l, "blockprof_targets_total") {
			t.Log(l)
		}
	}
	s.stop(t)
	n := len(rss) / 3
	if n < 3 {
		t.Fatalf("only %d samples", len(rss))
	}
	mid, last := mean(rss[n:2*n]), mean(rss[2*n:])
	t.Logf("rss: middle third %.0f MiB, last third %.0f MiB (max %.0f); fds %v .. %v (max %v)",
		mid, last, maxOf(rss), fds[n], fds[len(fds)-1], maxOf(fds))
	if last > mid*1.10+16 {
		t.Errorf("RSS still growing after warm-up: middle third %.0f MiB, last third %.0f MiB", mid, last)
	}
	if mean(fds[2*n:]) > mean(fds[n:2*n])+8 {
		t.Errorf("open fds grew: middle third %.0f, last third %.0f", mean(fds[n:2*n]), mean(fds[2*n:]))
	}
}

// cgroup2Root is where a cgroup v2 hierarchy is mounted (/sys/fs/cgroup,
// or /sys/fs/cgroup/unified on a hybrid host).
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	t.Fatal("no cgroup v2 hierarchy mounted")
	return ""
}

// metric is one line of a Prometheus text page, "" if absent.
func metric(page, name string) string {
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}
