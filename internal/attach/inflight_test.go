package attach

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// hungTruth is what testdata/workloads/hung reports once it is stuck.
type hungTruth struct {
	PID   int `json:"pid"`
	Waits []struct {
		Func    string  `json:"func"`
		TID     uint32  `json:"tid"`
		Since   float64 `json:"since"` // CLOCK_MONOTONIC seconds
		Syscall string  `json:"syscall"`
		Holder  int     `json:"holder"`
	} `json:"waits"`
}

// startHung builds and starts the hung workload and returns what it
// says once every thread is stuck.
func startHung(t *testing.T) (hungTruth, *exec.Cmd) {
	t.Helper()
	bin := testutil.BuildC(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/hung/hung.c"), "-O2", "-pthread")
	cmd := exec.Command(bin)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	var tr hungTruth
	if !sc.Scan() {
		t.Fatal("hung printed nothing")
	}
	if err := json.Unmarshal(sc.Bytes(), &tr); err != nil || len(tr.Waits) != 4 {
		t.Fatalf("hung truth %q: %v", sc.Text(), err)
	}
	return tr, cmd
}

// Threads stuck before attach are measured for the whole window, cut at
// both ends, with their stacks and syscall, and listed as still waiting
// with the time their wait began.
func TestWaitsInProgress(t *testing.T) {
	testutil.RequireRoot(t)
	tr, _ := startHung(t)
	s, err := Open(Options{PIDs: []int{tr.PID}, Unwind: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddUnwind(tr.PID); err != nil {
		t.Fatal(err)
	}
	if err := s.OpenWaitsInProgress(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	window := s.CountingUntil() - s.CountingSince()
	recs, err := s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := s.StillWaiting()
	if err != nil {
		t.Fatal(err)
	}
	byTID := map[uint32]Waiting{}
	for _, w := range waiting {
		byTID[w.TID] = w
	}
	for _, w := range tr.Waits {
		var got time.Duration
		var rec *Record
		for i := range recs {
			if recs[i].TID == w.TID {
				got += recs[i].Blocked + recs[i].RunQueue
				rec = &recs[i]
			}
		}
		if rec == nil {
			t.Errorf("%s (tid %d): no interval", w.Func, w.TID)
			continue
		}
		t.Logf("%s: %v of a %v window, cut %v, syscall %d, %d user / %d kernel frames", w.Func, got, window, rec.Cut,
			rec.SysNr, len(rec.UserStack), len(rec.KernelStack))
		testutil.Near(t, got.Seconds(), window.Seconds(), 0.02, w.Func+" seconds off-CPU")
		if rec.Cut != CutBefore|CutAfter {
			t.Errorf("%s: cut %v, want both", w.Func, rec.Cut)
		}
		if len(rec.UserStack) < 2 || len(rec.KernelStack) < 2 {
			t.Errorf("%s: stacks %d user / %d kernel frames", w.Func, len(rec.UserStack), len(rec.KernelStack))
		}
		wt, ok := byTID[w.TID]
		if !ok {
			t.Errorf("%s: not listed as still waiting", w.Func)
			continue
		}
		// The kernel saw it leave the CPU just after the workload read
		// its clock, before the blocking call (85-165 µs measured, the
		// CPUs' scheduler clocks set against CLOCK_MONOTONIC each).
		began := time.Duration(w.Since * 1e9)
		if d := wt.Since - began; d < 0 || d > 5*time.Millisecond {
			t.Errorf("%s: waiting since %v, the workload says %v (%v apart)", w.Func, wt.Since, began, d)
		}
	}
}
