package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
			testutil.CheckTruth(t, truth, map[string]int{"handle_sleep": 1, "handle_cache": 1, "handle_fifo": 1,
				"handle_asleep": 1, "blocking_io": 1}, map[string]int{"burn_cpu": 1})
			loopTID := testutil.TruthBlock(t, truth, "handle_sleep").TID
			screen := r.stdout.String()
			if !strings.Contains(screen, fmt.Sprintf("/%d (epoll_wait)", loopTID)) {
				t.Errorf("first screen does not name loop thread %d and its epoll_wait", loopTID)
			}
			allStalls, _ := loopValues(t, p, loopTID, "", "stalls")
			if want := int64(4 * rounds); allStalls < want || allStalls > want+1 {
				t.Errorf("%d stalls on the loop thread, want %d (one per stalling call)", allStalls, want)
			}
			for _, fn := range []string{"handle_sleep", "handle_cache", "handle_fifo"} {
				b := testutil.TruthBlock(t, truth, fn)
				if b.TID != loopTID || b.Count != rounds {
					t.Errorf("%s ran %d times on thread %d, want %d on the loop thread %d", fn, b.Count, b.TID, rounds, loopTID)
				}
				got, stack := offCPUStall(t, p, loopTID, fn)
				t.Logf("%s: %v", fn, stack)
				testutil.Near(t, got, b.Seconds, 0.10, fn+" stall seconds off-CPU")
				checkPythonStack(t, stack, fn, "loop_app.py", blockLine(t, script, fn))
				if n, _ := loopValues(t, p, loopTID, fn, "stalls"); n != int64(b.Count) {
					t.Errorf("%s: the largest part of %d stalls, want %d", fn, n, b.Count)
				}
			}
			// The right ways ran as often, and never stalled the loop.
			for _, fn := range []string{"handle_asleep", "blocking_io"} {
				b := testutil.TruthBlock(t, truth, fn)
				if b.Count != rounds {
					t.Errorf("%s ran %d times, want %d", fn, b.Count, rounds)
				}
				if n, st := loopValues(t, p, loopTID, fn, "stall_time"); n != 0 {
					t.Errorf("%s stalled the loop for %dns: %v", fn, n, st)
				}
			}
			if io := testutil.TruthBlock(t, truth, "blocking_io"); io.TID == loopTID {
				t.Errorf("blocking_io ran on the loop thread %d, not on the executor's", loopTID)
			} else if n, _ := loopValues(t, p, io.TID, "", "stall_time"); n != 0 {
				t.Errorf("worker thread %d (loop %d) has %dns of stalls", io.TID, loopTID, n)
			}
			c := testutil.TruthCPU(t, truth, "burn_cpu")
			if c.TID != loopTID || c.Count != rounds {
				t.Errorf("burn_cpu ran %d times on thread %d, want %d on the loop thread %d", c.Count, c.TID, rounds, loopTID)
			}
			ns, stack := loopValues(t, p, loopTID, c.Func, "stall_oncpu")
			t.Logf("%s: %v", c.Func, stack)
			testutil.Near(t, float64(ns)/1e9, c.Seconds, 0.10, "burn_cpu stall seconds on CPU")
			if frameIndex(stack, "burn_cpu") < 0 || frameIndex(stack, "handle_cpu") < frameIndex(stack, "burn_cpu") {
				t.Errorf("on-CPU stack lacks burn_cpu ← handle_cpu: %v", stack)
			}
		})
	}
}

// A quiet asyncio loop (a no-op timer every 20 ms) is a loop with many
// iterations and no stall.
func TestLoopIdle(t *testing.T) {
	testutil.RequireRoot(t)
	py := firstPython(t)
	truth, p, r := profileWorkload(t, py.Path, []string{pyWorkload(t, "loop_app.py"), "idle", "10"}, "--loop")
	// 1 s of a 20 ms timer: about 50 ticks, each an iteration of the loop.
	if truth.Ticks < 25 {
		t.Fatalf("the idle loop's timer ran %d times, want about 50: %+v", truth.Ticks, truth)
	}
	screen := r.stdout.String()
	// The loop is the main thread.
	m := regexp.MustCompile(fmt.Sprintf(`/%d \(epoll_wait\): ([0-9,]+) iteration`, truth.PID)).FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("first screen does not name the loop thread %d and its epoll_wait", truth.PID)
	}
	if n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", "")); err != nil || n < truth.Ticks {
		t.Errorf("%s iterations of the loop, want at least its %d timer ticks", m[1], truth.Ticks)
	}
	if !strings.Contains(screen, "no stall > ") {
		t.Errorf("first screen lacks the idle loop with no stall")
	}
	stallTime := sampleIndex(t, p, "stall_time")
	for _, s := range p.Sample {
		if s.Value[stallTime] != 0 {
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
	testutil.CheckTruth(t, truth, map[string]int{"handle_request": 1, "run_loop": 1, "feed": 1}, map[string]int{"handle_spin": 1})
	req := testutil.TruthBlock(t, truth, "handle_request")
	if req.Count != n {
		t.Errorf("handle_request ran %d times, want %d", req.Count, n)
	}
	got, stack := offCPUStall(t, p, req.TID, "handle_request")
	t.Logf("handle_request: %v", stack)
	testutil.Near(t, got, req.Seconds, 0.10, "handle_request stall seconds off-CPU")
	if stalls, _ := loopValues(t, p, req.TID, "", "stalls"); stalls != n {
		t.Errorf("%d stalls, want %d", stalls, n)
	}
	spin := testutil.TruthCPU(t, truth, "handle_spin")
	if spin.Count != n/2 || spin.TID != req.TID {
		t.Errorf("handle_spin ran %d times on thread %d, want %d on the loop thread %d", spin.Count, spin.TID, n/2, req.TID)
	}
	ns, st := loopValues(t, p, req.TID, spin.Func, "stall_oncpu")
	t.Logf("handle_spin: %v", st)
	testutil.Near(t, float64(ns)/1e9, spin.Seconds, 0.10, "handle_spin stall seconds on CPU")
}

// Node: a timer handler stalls the libuv loop in readFifo (readFileSync of
// a FIFO), busyLoop (20 ms on the CPU) and runSleep (execSync, which waits
// in a private epoll loop of its own: not the loop's wait, so inside the
// stall). JavaScript names come from the perf map.
func TestLoopNode(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "node")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
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
	testutil.CheckTruth(t, truth, map[string]int{"readFifo": 1, "runSleep": 1}, map[string]int{"busyLoop": 1})
	for _, b := range truth.Blocks {
		if b.TID != loopTID || b.Count != n {
			t.Errorf("%s ran %d times on thread %d, want %d on the loop thread %d", b.Func, b.Count, b.TID, n, loopTID)
		}
		var got float64
		var stack []string
		for _, s := range p.Sample {
			if st := stackNames(s); sampleTID(s) == int64(loopTID) && containsFrame(st, b.Func) {
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
		if c.TID != loopTID || c.Count != n {
			t.Errorf("%s ran %d times on thread %d, want %d on the loop thread %d", c.Func, c.Count, c.TID, n, loopTID)
		}
		var got int64
		for _, s := range p.Sample {
			if st := stackNames(s); sampleTID(s) == int64(loopTID) && containsFrame(st, c.Func) {
				got += s.Value[sampleIndex(t, p, "stall_oncpu")]
			}
		}
		testutil.Near(t, float64(got)/1e9, c.Seconds, 0.10, c.Func+" stall seconds on CPU")
	}
}
