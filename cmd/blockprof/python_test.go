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
			b, ok := truth.Block("blocker")
			if !ok {
				t.Fatalf("truth without blocker: %+v", truth)
			}
			got, stack := pyTotal(t, p, b.TID, "blocker")
			t.Logf("stack: %v", stack)
			testutil.Near(t, got, b.Seconds, 0.05, "blocker off-CPU seconds")
			checkPythonStack(t, stack, "blocker", "sleep.py", line, "main", "sleep.<module>")
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
