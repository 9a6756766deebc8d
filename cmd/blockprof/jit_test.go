package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// Node with --perf-basic-prof: its JIT-compiled JavaScript functions are
// named from /tmp/perf-PID.map, on the stack of a synchronous read of a
// FIFO.
func TestRecordNodePerfMap(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "node")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 5
	script := filepath.Join(testutil.RepoRoot(t), "testdata/workloads/node/fifo.js")
	// --perf-basic-prof also writes V8's log: into the temp dir, not here.
	v8log := "--logfile=" + filepath.Join(filepath.Dir(fifo), "v8.log")
	w := testutil.Start(t, node, "--perf-basic-prof", "--interpreted-frames-native-stack",
		"--no-logfile-per-isolate", v8log, script, fifo, "5")
	t.Cleanup(func() { os.Remove("/tmp/perf-" + itoa(w.PID()) + ".map") })
	wr, err := os.OpenFile(fifo, os.O_WRONLY, 0) // the workload opens its end before ready
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	w.Ready(t)
	r := startRecord(t, "-q", "-p", itoa(w.PID()))
	w.Go(t)
	// The writer: one byte every 200 ms.
	for i := 0; i < n; i++ {
		time.Sleep(200 * time.Millisecond)
		wr.Write([]byte("x"))
	}
	truth, err := w.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := r.wait(t)
	testutil.CheckTruth(t, truth, map[string]int{"blockingRead": 1}, nil)
	b := testutil.TruthBlock(t, truth, "blockingRead")
	if b.Count != n {
		t.Errorf("blockingRead: %d reads, want %d", b.Count, n)
	}
	var got float64
	var example []string
	delay, runq := sampleIndex(t, p, "delay"), sampleIndex(t, p, "runqueue")
	for _, s := range p.Sample {
		st := stackNames(s)
		if sampleTID(s) == int64(b.TID) && containsFrame(st, "blockingRead") {
			got += float64(s.Value[delay]+s.Value[runq]) / 1e9
			example = st
		}
	}
	t.Logf("stack: %v", example)
	testutil.Near(t, got, b.Seconds, 0.05, "blockingRead off-CPU seconds (JS frames named)")
	if !containsFrame(example, "handle") {
		t.Errorf("caller handle not named: %v", example)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
