package attach

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// With LateTargets a session opens with no target at all and counts a
// process only from AddTarget on; without it, AddTarget refuses.
func TestSessionLateTargets(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("sh", "-c", "read x; i=0; while [ $i -lt 10 ]; do sleep 0.05 & wait $!; i=$((i+1)); done")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open with no target and no LateTargets: want an error")
	}
	s, err := Open(Options{LateTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Before AddTarget nothing of the process counts.
	stdin.Write([]byte("go\n"))
	time.Sleep(150 * time.Millisecond)
	before, err := s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range before {
		if int(r.TGID) == cmd.Process.Pid {
			t.Fatalf("counted before AddTarget: %+v", r)
		}
	}
	if err := s.AddTarget(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTarget(cmd.Process.Pid); err != nil { // twice: harmless
		t.Fatal(err)
	}
	added := time.Now()
	cmd.Wait()
	since := time.Since(added)
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	var blocked time.Duration
	for _, r := range recs {
		if int(r.TGID) == cmd.Process.Pid {
			blocked += r.Blocked
		}
	}
	// Ten sleeps of 50 ms, some of them before AddTarget: what counts
	// is at most the time since, and most of it.
	t.Logf("blocked %v in the %v since AddTarget", blocked, since)
	if blocked > since || blocked < since/2 {
		t.Errorf("blocked %v after AddTarget, want most of the %v since", blocked, since)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTarget(cmd.Process.Pid); err == nil {
		t.Error("AddTarget after Close: want an error")
	}

	one, err := Open(Options{PIDs: []int{os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if err := one.AddTarget(1); err == nil {
		t.Error("AddTarget without LateTargets: want an error")
	}
}
