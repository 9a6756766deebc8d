package attach

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("needs root (loads BPF); CI must run as root")
	}
	t.Skip("needs root (loads BPF): run 'sudo go test ./...'")
}

// A process that sleeps 50 × 20 ms must show about one second blocked, and
// nothing may stay loaded after Close.
func TestSessionSleeper(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command("sh", "-c", "read x; i=0; while [ $i -lt 20 ]; do sleep 0.05 & wait $!; i=$((i+1)); done")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	start := time.Now()
	s, err := Open(Options{PIDs: []int{cmd.Process.Pid}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attach took %v", time.Since(start))
	stdin.Write([]byte("go\n"))
	cmd.Wait()
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
	t.Logf("blocked %v drops %v", blocked, drops)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var left []string
	for i := 0; i < 100; i++ {
		if left, err = LoadedPrograms(); err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("left loaded after Close: %v", left)
}
