package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"blockprof/internal/testutil"
)

// loopValues sums a loop stall value (stalls, stall_time, stall_blocked,
// stall_runqueue, stall_oncpu) over thread tid's samples with fn on the
// stack ("" for all), and returns one such stack.
func loopValues(t *testing.T, p *profile.Profile, tid int, fn, typ string) (int64, []string) {
	i := sampleIndex(t, p, typ)
	var sum int64
	var example []string
	for _, s := range p.Sample {
		if len(s.NumLabel["tid"]) == 0 || s.NumLabel["tid"][0] != int64(tid) || s.Value[i] == 0 {
			continue
		}
		st := stackNames(s)
		if fn != "" && !hasFrame(st, fn) {
			continue
		}
		sum += s.Value[i]
		if example == nil {
			example = st
		}
	}
	return sum, example
}

// offCPUStall is the off-CPU stall time (blocked + run-queue) of thread
// tid's stall samples with fn on the stack, in seconds.
func offCPUStall(t *testing.T, p *profile.Profile, tid int, fn string) (float64, []string) {
	b, st := loopValues(t, p, tid, fn, "stall_blocked")
	q, _ := loopValues(t, p, tid, fn, "stall_runqueue")
	return float64(b+q) / 1e9, st
}

// An asyncio server whose handlers stall its loop (time.sleep, a sync
// socket round trip, a sync FIFO read, 200 ms of Python on the CPU) and
// do it right (await asyncio.sleep, await asyncio.to_thread): every
// stalling handler is found with its function and line, its stall time
// within 10 % of the server's own clock and one stall per call; the right
// ways cause none, and the worker thread is no loop.
func TestLoopAsyncio(t *testing.T) {
	testutil.RequireRoot(t)
	script := pyWorkload(t, "loop_app.py")
	for _, py := range testutil.Pythons() {
		t.Run(py.Name, func(t *testing.T) {
			testutil.RequirePython(t, py)
			const rounds = 5
			truth, p, r := profileWorkload(t, py.Path, []string{script, "all", fmt.Sprint(rounds)},
				"--loop", "--stall", "20ms", "--loop-hz", "1000")
			loopTID := 0
			if b, ok := truth.Block("handle_sleep"); ok {
				loopTID = b.TID
			}
			if loopTID == 0 {
				t.Fatalf("truth has no handle_sleep: %+v", truth)
			}
			screen := r.stdout.String()
			if !strings.Contains(screen, fmt.Sprintf("/%d (epoll_wait)", loopTID)) {
				t.Errorf("first screen does not name loop thread %d and its epoll_wait", loopTID)
			}
			allStalls, _ := loopValues(t, p, loopTID, "", "stalls")
			if want := int64(4 * rounds); allStalls < want || allStalls > want+1 {
				t.Errorf("%d stalls on the loop thread, want %d (one per stalling call)", allStalls, want)
			}
			for _, b := range truth.Blocks {
				switch b.Func {
				case "handle_sleep", "handle_cache", "handle_fifo":
					got, stack := offCPUStall(t, p, loopTID, b.Func)
					t.Logf("%s: %v", b.Func, stack)
					testutil.Near(t, got, b.Seconds, 0.10, b.Func+" stall seconds off-CPU")
					checkPythonStack(t, stack, b.Func, "loop_app.py", blockLine(t, script, b.Func))
					if n, _ := loopValues(t, p, loopTID, b.Func, "stalls"); n != int64(b.Count) {
						t.Errorf("%s: the largest part of %d stalls, want %d", b.Func, n, b.Count)
					}
				case "blocking_io", "handle_asleep":
					if n, st := loopValues(t, p, loopTID, b.Func, "stall_time"); n != 0 {
						t.Errorf("%s stalled the loop for %dns: %v", b.Func, n, st)
					}
					if b.Func == "blocking_io" {
						if n, _ := loopValues(t, p, b.TID, "", "stall_time"); n != 0 || b.TID == loopTID {
							t.Errorf("worker thread %d (loop %d) has %dns of stalls", b.TID, loopTID, n)
						}
					}
				}
			}
			for _, c := range truth.CPU {
				if c.Func != "burn_cpu" {
					continue
				}
				ns, stack := loopValues(t, p, loopTID, c.Func, "stall_oncpu")
				t.Logf("%s: %v", c.Func, stack)
				testutil.Near(t, float64(ns)/1e9, c.Seconds, 0.10, "burn_cpu stall seconds on CPU")
				if frameIndex(stack, "burn_cpu") < 0 || frameIndex(stack, "handle_cpu") < frameIndex(stack, "burn_cpu") {
					t.Errorf("on-CPU stack lacks burn_cpu ← handle_cpu: %v", stack)
				}
			}
		})
	}
}

// A quiet asyncio loop (a no-op timer every 20 ms) is a loop with many
// iterations and no stall.
func TestLoopIdle(t *testing.T) {
	testutil.RequireRoot(t)
	py := firstPython(t)
	_, p, r := profileWorkload(t, py.Path, []string{pyWorkload(t, "loop_app.py"), "idle", "10"}, "--loop")
	screen := r.stdout.String()
	if !strings.Contains(screen, "(epoll_wait):") || !strings.Contains(screen, "no stall > ") {
		t.Errorf("first screen lacks the idle loop with no stall")
	}
	for _, s := range p.Sample {
		if s.Value[sampleIndex(t, p, "stall_time")] != 0 {
			t.Errorf("stall sample in an idle loop: %v %v", s.Label, stackNames(s))
		}
	}
}

// A C epoll loop whose handler sleeps in usleep (30 ms) and, every other
// request, spins 20 ms: usleep's stall time within 10 % of the program's
// clock, the spin's on-CPU time too, each at its function.
func TestLoopC(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/cloop/cloop.c"), "-O1", "-pthread")
	const n = 10
	truth, p, _ := profileWorkload(t, bin, []string{fmt.Sprint(n)}, "--loop", "--stall", "10ms", "--loop-hz", "1000")
	req, ok := truth.Block("handle_request")
	if !ok {
		t.Fatalf("no handle_request in the truth: %+v", truth)
	}
	got, stack := offCPUStall(t, p, req.TID, "handle_request")
	t.Logf("handle_request: %v", stack)
	testutil.Near(t, got, req.Seconds, 0.10, "handle_request stall seconds off-CPU")
	if stalls, _ := loopValues(t, p, req.TID, "", "stalls"); stalls != n {
		t.Errorf("%d stalls, want %d", stalls, n)
	}
	for _, c := range truth.CPU {
		if c.Func == "handle_spin" {
			ns, st := loopValues(t, p, req.TID, c.Func, "stall_oncpu")
			t.Logf("handle_spin: %v", st)
			testutil.Near(t, float64(ns)/1e9, c.Seconds, 0.10, "handle_spin stall seconds on CPU")
		}
	}
}

// Node: a timer handler stalls the libuv loop in readFifo (readFileSync of
// a FIFO), busyLoop (20 ms on the CPU) and runSleep (execSync, which waits
// in a private epoll loop of its own: not the loop's wait, so inside the
// stall). JavaScript names come from the perf map.
func TestLoopNode(t *testing.T) {
	testutil.RequireRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	dir := t.TempDir()
	script := filepath.Join(testutil.RepoRoot(t), "testdata/workloads/node/loop.js")
	const n = 6
	w := testutil.Start(t, node, "--perf-basic-prof", "--interpreted-frames-native-stack",
		"--no-logfile-per-isolate", "--logfile="+filepath.Join(dir, "v8.log"), script, filepath.Join(dir, "fifo"), fmt.Sprint(n))
	t.Cleanup(func() { os.Remove("/tmp/perf-" + itoa(w.PID()) + ".map") })
	w.Ready(t)
	r := startRecord(t, "--loop", "--stall", "50ms", "--loop-hz", "1000", "-p", itoa(w.PID()))
	w.Go(t)
	truth, err := w.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := r.wait(t)
	loopTID := w.PID()
	if !strings.Contains(r.stdout.String(), fmt.Sprintf("/%d (epoll_pwait)", loopTID)) {
		t.Errorf("first screen does not name the loop thread %d and its epoll_pwait", loopTID)
	}
	if stalls, _ := loopValues(t, p, loopTID, "", "stalls"); stalls != n {
		t.Errorf("%d stalls, want %d (one per tick)", stalls, n)
	}
	for _, b := range truth.Blocks {
		var got float64
		var stack []string
		for _, s := range p.Sample {
			if st := stackNames(s); s.NumLabel["tid"][0] == int64(loopTID) && containsFrame(st, b.Func) {
				got += float64(s.Value[sampleIndex(t, p, "stall_blocked")]+s.Value[sampleIndex(t, p, "stall_runqueue")]) / 1e9
				if stack == nil && s.Value[sampleIndex(t, p, "stall_blocked")] > 0 {
					stack = st
				}
			}
		}
		t.Logf("%s: %v", b.Func, stack)
		testutil.Near(t, got, b.Seconds, 0.10, b.Func+" stall seconds off-CPU")
	}
	for _, c := range truth.CPU {
		var got int64
		for _, s := range p.Sample {
			if st := stackNames(s); s.NumLabel["tid"][0] == int64(loopTID) && containsFrame(st, c.Func) {
				got += s.Value[sampleIndex(t, p, "stall_oncpu")]
			}
		}
		testutil.Near(t, float64(got)/1e9, c.Seconds, 0.10, c.Func+" stall seconds on CPU")
	}
}
