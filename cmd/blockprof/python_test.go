package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockprof/internal/testutil"

	"github.com/google/pprof/profile"
)

// pyWorkload is the path of a Python workload script.
func pyWorkload(t *testing.T, name string) string {
	return filepath.Join(testutil.RepoRoot(t), "testdata/workloads/python", name)
}

// blockLine is the line of script marked "# BLOCK" (or "# BLOCK fn").
func blockLine(t *testing.T, script, fn string) int {
	t.Helper()
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		_, mark, ok := strings.Cut(sc.Text(), "# BLOCK")
		if ok && (fn == "" || strings.TrimSpace(mark) == fn) {
			return n
		}
	}
	t.Fatalf("%s has no '# BLOCK %s' line", script, fn)
	return 0
}

// checkPythonStack: fn is on the stack at file:line, above the native leaf
// and kernel frames, below its callers (each in order, outermost last).
func checkPythonStack(t *testing.T, stack []string, fn, file string, line int, callers ...string) {
	t.Helper()
	i := frameIndex(stack, fn)
	if i < 0 {
		t.Fatalf("%s not on the stack: %v", fn, stack)
	}
	if want := fmt.Sprintf("%s %s:%d", fn, file, line); stack[i] != want {
		t.Errorf("frame %q, want %q", stack[i], want)
	}
	below := strings.Join(stack[:i], ";")
	if !strings.Contains(below, "schedule") {
		t.Errorf("no kernel frames below %s: %v", fn, stack[:i])
	}
	last := i
	for _, c := range callers {
		j := frameIndex(stack, c)
		if j <= last {
			t.Errorf("caller %s not above %s: %v", c, stack[last], stack)
			return
		}
		last = j
	}
}

// pyTotal is the off-CPU time of thread tid with fn on the stack.
func pyTotal(t *testing.T, p *profile.Profile, tid int, fn string) (float64, []string) {
	return offCPU(t, p, int64(tid), fn)
}

// A Python thread blocked in time.sleep: blocker at the sleep's line, with
// main and the module above it and the kernel below, for each interpreter
// found on the machine, and its time within 5 % of the script's own.
func TestRecordPythonSleep(t *testing.T) {
	testutil.RequireRoot(t)
	script := pyWorkload(t, "sleep.py")
	line := blockLine(t, script, "")
	for _, py := range testutil.Pythons() {
		t.Run(py.Name, func(t *testing.T) {
			testutil.RequirePython(t, py)
			truth, p, r := profileWorkload(t, py.Path, []string{script, "10"}, "-q=false")
			testutil.CheckTruth(t, truth, map[string]int{"blocker": 1}, nil)
			b := testutil.TruthBlock(t, truth, "blocker")
			got, stack := pyTotal(t, p, b.TID, "blocker")
			t.Logf("stack: %v", stack)
			testutil.Near(t, got, b.Seconds, 0.05, "blocker off-CPU seconds")
			checkPythonStack(t, stack, "blocker", "sleep.py", line, "main", "sleep.<module>")
			// The C function the line called joins the two: the native
			// walk (.eh_frame tables, no frame pointers in CPython or
			// libc) reaches time.sleep's implementation below blocker.
			// Debian's binary is stripped, and its matching debug info is
			// not to be had (time_sleep is static): there the frame is
			// unnamed and the splice starts at the Python frames.
			if strings.HasPrefix(py.Name, "debian") {
				return
			}
			if i, j := frameIndex(stack, "time_sleep"), frameIndex(stack, "blocker"); i < 0 || i > j {
				t.Errorf("time_sleep not between the libc leaf and blocker: %v", stack)
			}
			if share := syscallShare(t, p, int64(b.TID), "blocker", "clock_nanosleep"); share < 0.999 {
				t.Errorf("only %.1f%% of blocker's time labelled syscall=clock_nanosleep", 100*share)
			}
			want := fmt.Sprintf("blocker (sleep.py:%d) ← main ← <module>", line)
			if !strings.Contains(r.stdout.String(), want) {
				t.Errorf("first screen lacks %q:\n%s", want, r.stdout.String())
			}
		})
	}
}

// Threads blocking in different functions (sleep, Lock.acquire, socket
// recv) each get their own Python stack and time.
func TestRecordPythonThreads(t *testing.T) {
	testutil.RequireRoot(t)
	py := firstPython(t)
	script := pyWorkload(t, "threads.py")
	truth, p, _ := profileWorkload(t, py.Path, []string{script, "8"}, "-q")
	testutil.CheckTruth(t, truth, map[string]int{"sleep_worker": 1, "lock_worker": 1, "recv_worker": 1}, nil)
	for _, b := range truth.Blocks {
		got, stack := pyTotal(t, p, b.TID, b.Func)
		t.Logf("%s: %v", b.Func, stack)
		testutil.Near(t, got, b.Seconds, 0.05, b.Func+" off-CPU seconds")
		checkPythonStack(t, stack, b.Func, "threads.py", blockLine(t, script, b.Func), "Thread.run", "Thread._bootstrap")
		if share := syscallShare(t, p, int64(b.TID), b.Func, b.Syscall); share < 0.999 {
			t.Errorf("%s: only %.1f%% of its time labelled syscall=%s", b.Func, 100*share, b.Syscall)
		}
	}
}

// An asyncio loop that blocks: a time.sleep in one coroutine, a sync socket
// round trip in another, each with its callers up to the loop's run method
// and the socket's peer; and the right way, asyncio.to_thread, whose sleep
// shows on a worker thread and never on the loop thread.
func TestRecordPythonAsyncio(t *testing.T) {
	testutil.RequireRoot(t)
	py := firstPython(t)
	script := pyWorkload(t, "asyncio_app.py")
	truth, p, _ := profileWorkload(t, py.Path, []string{script, "20"}, "-q")
	testutil.CheckTruth(t, truth, map[string]int{"handle_request": 1, "get_cached": 1, "blocking_io": 1}, nil)
	loop := testutil.TruthBlock(t, truth, "handle_request")
	if cache := testutil.TruthBlock(t, truth, "get_cached"); cache.Target == "" {
		t.Fatalf("the workload did not say what get_cached waited on: %+v", cache)
	}
	for _, b := range truth.Blocks {
		got, stack := pyTotal(t, p, b.TID, b.Func)
		t.Logf("%s (tid %d): %v", b.Func, b.TID, stack)
		testutil.Near(t, got, b.Seconds, 0.05, b.Func+" off-CPU seconds")
		line := blockLine(t, script, b.Func)
		switch b.Func {
		case "blocking_io":
			if b.TID == loop.TID {
				t.Fatalf("to_thread ran blocking_io on the loop thread")
			}
			checkPythonStack(t, stack, b.Func, "asyncio_app.py", line, "Thread.run", "Thread._bootstrap")
			if onLoop, _ := pyTotal(t, p, loop.TID, b.Func); onLoop != 0 {
				t.Errorf("blocking_io shows %.4fs on the loop thread", onLoop)
			}
		default:
			checkPythonStack(t, stack, b.Func, "asyncio_app.py", line,
				"serve", "BaseEventLoop._run_once", "BaseEventLoop.run_forever", "BaseEventLoop.run_until_complete", "main")
		}
		if share := syscallShare(t, p, int64(b.TID), b.Func, b.Syscall); share < 0.999 {
			t.Errorf("%s: only %.1f%% of its time labelled syscall=%s", b.Func, 100*share, b.Syscall)
		}
		if b.Target != "" {
			if targets := targetsOf(p, int64(b.TID), b.Func); len(targets) != 1 || !targets[b.Target] {
				t.Errorf("%s: targets %v, want %q", b.Func, targets, b.Target)
			}
		}
	}
}

// `-- python3 script.py`: blockprof launches the interpreter, finds it is
// CPython once it has exec'ed and mapped its library, and gets its frames
// from the first call on.
func TestRecordPythonCommand(t *testing.T) {
	testutil.RequireRoot(t)
	for _, py := range testutil.Pythons() {
		t.Run(py.Name, func(t *testing.T) {
			testutil.RequirePython(t, py)
			script := pyWorkload(t, "sleep.py")
			truthFile := filepath.Join(t.TempDir(), "truth.json")
			t.Setenv("BLOCKPROF_TRUTH", truthFile)
			r := startRecordStdin(t, "go\n", "-q", "--", py.Path, script, "5")
			p := r.wait(t)
			truth, err := testutil.ReadTruth(truthFile)
			if err != nil {
				t.Fatal(err)
			}
			b := testutil.TruthBlock(t, truth, "blocker")
			got, stack := pyTotal(t, p, b.TID, "blocker")
			testutil.Near(t, got, b.Seconds, 0.05, "blocker off-CPU seconds")
			checkPythonStack(t, stack, "blocker", "sleep.py", blockLine(t, script, ""), "main")
		})
	}
}

// firstPython is the first interpreter installed, for the tests that need
// only one (Debian's, on CI). With none, the test skips, or fails under
// CI (RequirePython).
func firstPython(t *testing.T) testutil.Python {
	t.Helper()
	pys := testutil.Pythons()
	for _, py := range pys {
		if py.Path == "" {
			continue
		}
		if _, err := os.Stat(py.Path); err == nil {
			return py
		}
	}
	testutil.RequirePython(t, pys[0])
	t.Fatalf("%s is installed, but was not found first", pys[0].Name)
	return testutil.Python{}
}

// A CPython the walker cannot read (3.10 has no native_thread_id): one
// warning line, and the recording goes on with native stacks.
func TestRecordPythonUnsupported(t *testing.T) {
	testutil.RequireRoot(t)
	py310 := testutil.PyenvPython("3.10")
	testutil.RequirePython(t, py310)
	script := pyWorkload(t, "sleep.py")
	// 3.10's time.sleep waits in select(): idle by blockprof's rules.
	truth, p, r := profileWorkload(t, py310.Path, []string{script, "3"}, "-q", "--idle")
	warn := strings.TrimSpace(r.stderr.String())
	if strings.Count(warn, "\n") != 0 || !strings.Contains(warn, "warning") || !strings.Contains(warn, "3.10") {
		t.Errorf("stderr %q: want one warning line naming 3.10", warn)
	}
	b := testutil.TruthBlock(t, truth, "blocker")
	got, stack := pyTotal(t, p, b.TID, "")
	t.Logf("stack: %v", stack)
	testutil.Near(t, got, b.Seconds, 0.05, "thread off-CPU seconds")
	if hasFrame(stack, "blocker") {
		t.Errorf("Python frames from an unsupported version: %v", stack)
	}
}

// A thread without a Python thread state (pthread_create onto libc's
// sleep) keeps its native stack, with no Python frames; the Python thread
// waiting for it shows its own.
func TestRecordPythonNativeThread(t *testing.T) {
	testutil.RequireRoot(t)
	py := firstPython(t)
	script := pyWorkload(t, "native_thread.py")
	truth, p, _ := profileWorkload(t, py.Path, []string{script}, "-q")
	testutil.CheckTruth(t, truth, map[string]int{"join_native": 1, "sleep": 1}, nil)
	for _, b := range truth.Blocks {
		got, stack := pyTotal(t, p, b.TID, "")
		t.Logf("%s (tid %d): %v", b.Func, b.TID, stack)
		// The truth is the whole join: the sleeper lived a little less.
		testutil.Near(t, got, b.Seconds, 0.05, b.Func+" thread off-CPU seconds")
		python := false
		for _, s := range p.Sample {
			if sampleTID(s) != int64(b.TID) {
				continue
			}
			for _, loc := range s.Location {
				python = python || loc.Mapping.File == "[python]"
			}
		}
		switch b.Func {
		case "sleep":
			if python {
				t.Errorf("native thread has Python frames: %v", stack)
			}
			if !containsFrame(stack, "clock_nanosleep") {
				t.Errorf("native thread lost its native stack: %v", stack)
			}
		case "join_native":
			checkPythonStack(t, stack, "join_native", "native_thread.py", blockLine(t, script, ""), "main")
		}
	}
}
