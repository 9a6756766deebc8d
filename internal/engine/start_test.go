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

// LateTargets: a recording with no target at first does not end for
// lack of one, records a process from AddTargets on, and goes on after
// that process exits.
func TestLateTargets(t *testing.T) {
	testutil.RequireRoot(t)
	rec, err := Start(context.Background(), Config{LateTargets: true, UserStacks: true,
		KernelStacks: true, DrainInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	empty, err := rec.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(empty.Samples) != 0 {
		t.Errorf("no target yet, but %d samples", len(empty.Samples))
	}

	sleeper := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 10 ]; do sleep 0.05; i=$((i+1)); done")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	if err := rec.AddTargets([]int{sleeper.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	sleeper.Wait()
	time.Sleep(300 * time.Millisecond) // more than the exit check's 100 ms
	select {
	case <-rec.Done():
		t.Fatalf("recording ended when its only target exited: %s", rec.Reason())
	default:
	}
	p, err := rec.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var blocked time.Duration
	for _, s := range p.Samples {
		if s.PID == sleeper.Process.Pid {
			blocked += s.Blocked
		}
	}
	if blocked < 250*time.Millisecond {
		t.Errorf("added target blocked %v, want most of its 10 × 50 ms waits for its sleeps", blocked)
	}
	if _, ok := p.Processes[sleeper.Process.Pid]; !ok {
		t.Errorf("added target missing from the profile's processes: %v", p.Processes)
	}
}
