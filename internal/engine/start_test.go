package engine

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// Against the real kernel: two windows of a process that sleeps in a loop,
// one by Snapshot while recording goes on, the last by Stop.
func TestStartSnapshotStop(t *testing.T) {
	testutil.RequireRoot(t)
	sleeper := exec.Command("/bin/sh", "-c", "while :; do sleep 0.05; done")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()

	rec, err := Start(context.Background(), Config{PIDs: []int{sleeper.Process.Pid}, UserStacks: true,
		KernelStacks: true, DrainInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	time.Sleep(500 * time.Millisecond)
	asked := time.Now()
	first, err := rec.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	last, err := rec.Stop("test over")
	if err != nil {
		t.Fatal(err)
	}
	// The first window ends when Snapshot was asked for; the last one
	// runs from there (building the first took a while) to Stop.
	if len(first.Samples) == 0 || first.Duration < 450*time.Millisecond || first.Duration > 700*time.Millisecond {
		t.Errorf("first window: %d samples over %v, want some over about 500ms", len(first.Samples), first.Duration)
	}
	if since := time.Since(asked); len(last.Samples) == 0 || last.Duration < 500*time.Millisecond || last.Duration > since {
		t.Errorf("last window: %d samples over %v, want some over 500ms to %v", len(last.Samples), last.Duration, since)
	}
	if !last.Start.Equal(first.Start.Add(first.Duration)) {
		t.Errorf("the last window does not start where the first ended")
	}
	if _, err := rec.Snapshot(); err != ErrEnded {
		t.Errorf("Snapshot after Stop: %v, want ErrEnded", err)
	}
}
