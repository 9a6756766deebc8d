package attach

import (
	"os/exec"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// A process that sleeps 50 × 20 ms must show about one second blocked, and
// nothing may stay loaded after Close.
func TestSessionSleeper(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("sh", "-c", "read x; i=0; while [ $i -lt 20 ]; do sleep 0.05 & wait $!; i=$((i+1)); done")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	before := ownProgramsSettled(t, nil)
	start := time.Now()
	s, err := Open(Options{PIDs: []int{cmd.Process.Pid}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attach took %v", time.Since(start))
	begin := time.Now()
	stdin.Write([]byte("go\n"))
	cmd.Wait()
	wall := time.Since(begin)
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	var blocked time.Duration
	for _, r := range recs {
		blocked += r.Blocked
		t.Logf("%+v", r)
	}
	drops, _ := s.Drops()
	t.Logf("blocked %v of %v wall; drops %v", blocked, wall, drops)
	// The shell waits for 20 sleeps of 50 ms: at least 1 s blocked, and
	// never more than it lived.
	if blocked < time.Second || blocked > wall {
		t.Errorf("blocked %v, want between 1s and the wall time %v", blocked, wall)
	}
	if len(recs) == 0 || len(recs[0].KernelStack) == 0 {
		t.Errorf("no kernel stack captured: %+v", recs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ownProgramsSettled(t, before)
}
