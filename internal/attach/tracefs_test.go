package attach

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// Loop mode works on a host without tracefs (a fresh machine, most
// containers): this test runs itself again in a private mount namespace
// where tracefs and debugfs are unmounted, whatever this machine has
// mounted, finds an asyncio loop there and counts its iterations.
func TestLoopWithoutTracefs(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "python3")
	if os.Getenv("BLOCKPROF_TEST_NO_TRACEFS") == "" {
		testutil.RequireTool(t, "unshare")
		cmd := exec.Command("unshare", "-m", "sh", "-c",
			`umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; exec "$@"`,
			"sh", os.Args[0], "-test.run=^TestLoopWithoutTracefs$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "BLOCKPROF_TEST_NO_TRACEFS=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a mount namespace without tracefs:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestLoopWithoutTracefs") {
			t.Fatalf("failed without tracefs: %v", err)
		}
		return
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, " - tracefs ") || strings.Contains(line, " - debugfs ") {
			t.Fatalf("still mounted here: %s", line)
		}
	}

	cmd := exec.Command("python3", "-c", `
import asyncio, threading
async def main():
    print(threading.get_native_id(), flush=True)
    for _ in range(400):
        await asyncio.sleep(0.005)
asyncio.run(main())
`)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatal("workload printed no thread id")
	}
	tid := strings.TrimSpace(sc.Text())
	s, err := Open(Options{PIDs: []int{cmd.Process.Pid}, Loop: &LoopOptions{Stall: 100 * time.Millisecond, Auto: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(500 * time.Millisecond)
	evs, err := s.LoopEvents()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || (e.Kind == LoopFound && tid == strconv.FormatUint(uint64(e.TID), 10))
	}
	threads, err := s.LoopThreads()
	if err != nil {
		t.Fatal(err)
	}
	var iters uint64
	for _, th := range threads {
		if strconv.FormatUint(uint64(th.TID), 10) == tid {
			iters = th.Iterations
		}
	}
	t.Logf("loop thread %s found: %v, %d iterations in 0.5 s", tid, found, iters)
	// A 5 ms timer loop iterates about 100 times in 0.5 s.
	if !found || iters < 50 {
		t.Fatalf("loop thread %s: found %v, %d iterations; want it found with >= 50", tid, found, iters)
	}
}
