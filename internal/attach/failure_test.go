package attach

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

var errInjected = errors.New("injected failure")

// Open fails at every step of the attach sequence in turn, and each time
// returns a one-line error, panics nowhere and leaves nothing behind: no
// BPF object of this process open, and the machine's blockprof programs
// as they were before.
func TestOpenFailsCleanlyAtEveryStep(t *testing.T) {
	testutil.RequireRoot(t)
	// A target blocked in a wait, named as a loop thread, so that every
	// optional step runs: loop hints, sampling, the loop ring.
	cmd := exec.Command("python3", "-c", "import select; select.select([], [], [], 60)")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	opts := Options{PIDs: []int{pid}, TIDs: []int{pid}, Unwind: true, Python: true, WakerStacks: true,
		Loop: &LoopOptions{Stall: 10 * time.Millisecond, Threads: []int{pid}, Auto: true, SampleHz: 99}}

	before := ownProgramsSettled(t, nil)
	var steps []string
	failStep = func(name string) error { steps = append(steps, name); return nil }
	defer func() { failStep = nil }()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("open without faults: %v", err)
	}
	s.Close()
	// Every kind of step the issue names must be among them.
	for _, want := range []string{"load", "add target", "add thread", "attach bprof_switch", "attach bprof_wakeup",
		"add loop thread", "read loop events", "sample loop thread"} {
		if !slices.Contains(steps, want) {
			t.Fatalf("step %q never reached; steps: %q", want, steps)
		}
	}
	t.Logf("%d steps: %q", len(steps), steps)
	ownProgramsSettled(t, before)

	for k := range steps {
		i := 0
		failStep = func(string) error {
			i++
			if i-1 == k {
				return errInjected
			}
			return nil
		}
		var s *Session
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("step %d (%s): panic: %v", k, steps[k], r)
				}
			}()
			s, err = Open(opts)
		}()
		switch {
		case err == nil:
			s.Close()
			t.Errorf("step %d (%s): Open succeeded", k, steps[k])
		case s != nil:
			t.Errorf("step %d (%s): Open returned a session with its error", k, steps[k])
		case !errors.Is(err, errInjected):
			t.Errorf("step %d (%s): error %v does not carry the failure", k, steps[k], err)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("step %d (%s): error is not one line: %q", k, steps[k], err)
		}
		if fds := bpfFds(t); len(fds) > 0 {
			t.Errorf("step %d (%s): left open: %v", k, steps[k], fds)
		}
		ownProgramsSettled(t, before)
	}
}

// ownProgramsSettled waits until the machine's blockprof programs are
// back to want (the kernel frees them after an RCU grace period): none
// loaded that was not loaded before (another blockprof on the machine may
// unload its own meanwhile). With want nil it returns them once they stop
// changing.
func ownProgramsSettled(t *testing.T, want []string) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(3 * time.Second)
	for {
		prev := got
		var err error
		if got, err = LoadedPrograms(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if want == nil && prev != nil && slices.Equal(prev, got) {
			return got
		}
		added := slices.DeleteFunc(slices.Clone(got), func(p string) bool { return slices.Contains(want, p) })
		if want != nil && len(added) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			if want != nil {
				t.Fatalf("blockprof programs left loaded: %q (before: %q)", added, want)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bpfFds lists this process's open BPF objects and perf events.
func bpfFds(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		dst, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (strings.Contains(dst, "bpf-") || strings.Contains(dst, "perf_event")) {
			out = append(out, fmt.Sprintf("fd %s -> %s", e.Name(), dst))
		}
	}
	return out
}
