package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"blockprof/internal/attach"
	"blockprof/internal/testutil"
)

// stuckTruth is what the hung workloads (testdata/workloads/hung/hung.c,
// testdata/workloads/python/hung.py) print once every thread is stuck.
type stuckTruth struct {
	PID   int `json:"pid"`
	Waits []struct {
		Func    string  `json:"func"`
		TID     int     `json:"tid"`
		Since   float64 `json:"since"` // CLOCK_MONOTONIC seconds, just before the blocking call
		Syscall string  `json:"syscall"`
		Holder  int     `json:"holder"` // C mutex waits: the thread holding the mutex
	} `json:"waits"`
}

// startStuck starts a hung workload and returns what it says once stuck.
func startStuck(t *testing.T, name string, args ...string) stuckTruth {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("%s printed nothing", name)
	}
	var tr stuckTruth
	if err := json.Unmarshal(sc.Bytes(), &tr); err != nil || len(tr.Waits) != 4 {
		t.Fatalf("%s said %q: %v", name, sc.Text(), err)
	}
	return tr
}

// stuckWorkloads are the C workload and the Python one on each installed
// interpreter.
func stuckWorkloads(t *testing.T) map[string]func(t *testing.T) stuckTruth {
	root := testutil.RepoRoot(t)
	out := map[string]func(t *testing.T) stuckTruth{
		"c": func(t *testing.T) stuckTruth {
			bin := testutil.BuildC(t, filepath.Join(root, "testdata/workloads/hung/hung.c"), "-O2", "-g", "-pthread")
			return startStuck(t, bin)
		},
	}
	for _, py := range testutil.Pythons() {
		out[py.Name] = func(t *testing.T) stuckTruth {
			testutil.RequirePython(t, py)
			return startStuck(t, py.Path, filepath.Join(root, "testdata/workloads/python/hung.py"), t.TempDir())
		}
	}
	return out
}

// A service stuck before blockprof arrives: `record -d 3s` shows every
// wait with its function, syscall and 3 s of time, marked as cut by the
// window at both ends, and the first screen lists the stuck threads, with
// the C deadlock as a cycle naming both holders.
func TestRecordStuck(t *testing.T) {
	testutil.RequireRoot(t)
	for name, start := range stuckWorkloads(t) {
		t.Run(name, func(t *testing.T) {
			tr := start(t)
			r := startRecord(t, "-p", fmt.Sprint(tr.PID), "-d", "3s")
			r.keepEarlyWaits = true
			p := r.wait(t)
			window := time.Duration(p.DurationNanos).Seconds()
			testutil.Near(t, window, 3, 0.02, "window seconds")
			screen := r.stdout.String()
			if !strings.Contains(screen, "still blocked when recording stopped") {
				t.Errorf("no still-blocked section on the first screen")
			}
			for _, w := range tr.Waits {
				var got float64
				cuts := map[string]bool{}
				syscalls := map[string]bool{}
				for _, s := range p.Sample {
					if sampleTID(s) == int64(w.TID) && hasFunc(s, w.Func) {
						got += float64(s.Value[1]+runQueueValue(s)) / 1e9
						cuts[strings.Join(s.Label["cut"], "")] = true
						syscalls[strings.Join(s.Label["syscall"], "")] = true
					}
				}
				t.Logf("%s (tid %d): %.4fs, cut %v, syscall %v", w.Func, w.TID, got, cuts, syscalls)
				testutil.Near(t, got, window, 0.02, w.Func+" seconds")
				if len(cuts) != 1 || !cuts["both"] {
					t.Errorf("%s: cut labels %v, want both", w.Func, cuts)
				}
				if len(syscalls) != 1 || !syscalls[w.Syscall] {
					t.Errorf("%s: syscalls %v, want %s", w.Func, syscalls, w.Syscall)
				}
				if !strings.Contains(screen, w.Func) {
					t.Errorf("%s not on the first screen", w.Func)
				}
			}
			checkHolders(t, tr, screen, name == "c")
		})
	}
}

// checkHolders: C mutex waits name their holder and form a deadlock;
// Python locks record no owner, and the screen says so.
func checkHolders(t *testing.T, tr stuckTruth, screen string, c bool) {
	t.Helper()
	if !c {
		if strings.Contains(screen, "DEADLOCK") || strings.Contains(screen, "held by") {
			t.Errorf("a holder was guessed for Python locks:\n%s", screen)
		}
		if !strings.Contains(screen, "not recorded") {
			t.Errorf("no word that the Python locks' holders are unknown")
		}
		return
	}
	var lockers []int
	for _, w := range tr.Waits {
		if w.Holder != 0 {
			lockers = append(lockers, w.TID)
			if !strings.Contains(screen, fmt.Sprintf("held by %d ", w.Holder)) {
				t.Errorf("%s: holder %d not named", w.Func, w.Holder)
			}
		}
	}
	deadlock := ""
	for _, line := range strings.Split(screen, "\n") {
		if strings.Contains(line, "DEADLOCK") {
			deadlock = line
		}
	}
	if len(lockers) != 2 || !strings.Contains(deadlock, fmt.Sprint(lockers[0])) || !strings.Contains(deadlock, fmt.Sprint(lockers[1])) {
		t.Errorf("deadlock line %q, want one naming %v", deadlock, lockers)
	}
}

// `blockprof now` on a stuck process: every waiting function is listed
// with how long it has waited, at least since the workload says it began,
// and the C deadlock as a cycle.
func TestNow(t *testing.T) {
	testutil.RequireRoot(t)
	bin := blockprofBin(t)
	for name, start := range stuckWorkloads(t) {
		t.Run(name, func(t *testing.T) {
			tr := start(t)
			began := attach.Monotonic()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, "now", "-p", fmt.Sprint(tr.PID), "--format", "json")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatalf("now: %v; stderr %s", err, stderr.String())
			}
			t.Logf("now took %v", time.Since(t0))
			var snap struct {
				Threads []struct {
					TID      int      `json:"tid"`
					Waiting  bool     `json:"waiting"`
					WaitedNs int64    `json:"waited_ns"`
					Syscall  string   `json:"syscall"`
					Holder   int      `json:"holder"`
					Stack    []string `json:"stack"`
				} `json:"threads"`
				Deadlocks [][]int `json:"deadlocks"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &snap); err != nil {
				t.Fatalf("now --format json: %v\n%s", err, stdout.String())
			}
			for _, w := range tr.Waits {
				found := false
				for _, th := range snap.Threads {
					if th.TID != w.TID {
						continue
					}
					found = true
					least := began - time.Duration(w.Since*1e9)
					t.Logf("%s: waited %v (at least %v), %s, holder %d", w.Func, time.Duration(th.WaitedNs), least, th.Syscall, th.Holder)
					if !th.Waiting || time.Duration(th.WaitedNs) < least {
						t.Errorf("%s: waiting %v for %v, want at least %v", w.Func, th.Waiting, time.Duration(th.WaitedNs), least)
					}
					if th.Syscall != w.Syscall || !strings.Contains(strings.Join(th.Stack, "\n"), w.Func) {
						t.Errorf("%s: syscall %q, stack %q", w.Func, th.Syscall, th.Stack)
					}
					if th.Holder != w.Holder {
						t.Errorf("%s: holder %d, want %d", w.Func, th.Holder, w.Holder)
					}
				}
				if !found {
					t.Errorf("%s (tid %d) not listed", w.Func, w.TID)
				}
			}
			if wantCycles := map[bool]int{true: 1, false: 0}[name == "c"]; len(snap.Deadlocks) != wantCycles {
				t.Errorf("deadlocks %v, want %d", snap.Deadlocks, wantCycles)
			}
		})
	}
}

func hasFunc(s *profile.Sample, fn string) bool {
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil && (l.Function.Name == fn || strings.HasSuffix(l.Function.Name, "."+fn)) {
				return true
			}
		}
	}
	return false
}

func runQueueValue(s *profile.Sample) int64 {
	if len(s.Value) > 2 {
		return s.Value[2]
	}
	return 0
}
