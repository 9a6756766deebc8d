package attach

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// slowTicks is an asyncio loop ticking every 5 ms; every 10th tick is slow
// (a 30 ms time.sleep, then 40 ms of CPU). It prints the loop thread's id,
// waits for a line, runs 12 slow ticks, and prints each slow callback's
// CLOCK_MONOTONIC start and end in nanoseconds, as JSON.
const slowTicks = `
import asyncio, json, sys, threading, time
slow = []
def tick(loop, n, done):
    if n % 10 == 9:
        t0 = time.monotonic_ns()
        time.sleep(0.03)
        t1 = time.thread_time()
        while time.thread_time() - t1 < 0.04:
            pass
        slow.append([t0, time.monotonic_ns()])
    if len(slow) >= 12:
        done.set_result(None)
        return
    loop.call_later(0.005, tick, loop, n + 1, done)
async def main():
    loop = asyncio.get_running_loop()
    for _ in range(20):
        await asyncio.sleep(0.002)
    print(threading.get_native_id(), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    done = loop.create_future()
    tick(loop, 0, done)
    await done
    print(json.dumps(slow), flush=True)
asyncio.run(main())
`

// The kernel side of loop mode against a real asyncio loop: the loop
// thread is found by its epoll_wait calls, every slow callback is one
// stall whose start and end match the callback's own clock, fast ticks
// are not stalls, and the stalls' on-CPU samples and off-CPU intervals
// come tagged with their iteration.
func TestLoopStallsAsyncio(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "python3")
	cmd := exec.Command("python3", "-c", slowTicks)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewScanner(stdout)
	if !out.Scan() {
		t.Fatal("workload printed no thread id")
	}
	loopTID, err := strconv.Atoi(strings.TrimSpace(out.Text()))
	if err != nil || loopTID <= 0 {
		t.Fatalf("workload printed %q, want its loop thread's id", out.Text())
	}

	const stall = 20 * time.Millisecond
	s, err := Open(Options{PIDs: []int{cmd.Process.Pid}, Loop: &LoopOptions{Stall: stall, Auto: true, SampleHz: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Let the executor's readline park, then start.
	time.Sleep(100 * time.Millisecond)
	if _, err := s.LoopEvents(); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	var events []LoopEvent
	var recs []Record
	done := make(chan struct{})
	var slow [][2]int64
	go func() {
		defer close(done)
		if out.Scan() {
			json.Unmarshal(out.Bytes(), &slow)
		}
	}()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		}
		ev, err := s.LoopEvents()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev...)
	}
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	ev, _ := s.LoopEvents()
	events = append(events, ev...)
	recs, err = s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	threads, err := s.LoopThreads()
	if err != nil {
		t.Fatal(err)
	}
	drops, _ := s.Drops()
	t.Logf("loop threads %+v", summarize(threads))
	t.Logf("drops %v", drops)
	if len(slow) != 12 {
		t.Fatalf("workload reported %d slow ticks, want 12", len(slow))
	}

	var stalls []LoopEvent
	for _, e := range events {
		if e.Kind == LoopStall {
			if e.TID != uint32(loopTID) {
				t.Errorf("stall on thread %d, the loop thread is %d", e.TID, loopTID)
			}
			stalls = append(stalls, e)
		}
	}
	if len(stalls) != len(slow) {
		t.Fatalf("%d stalls, want one per slow callback (%d): %+v", len(stalls), len(slow), stalls)
	}
	stallSeq := map[uint32]LoopEvent{}
	for i, e := range stalls {
		cb := time.Duration(slow[i][1] - slow[i][0])
		it := e.End - e.Start
		// The iteration holds the callback plus the loop's own work
		// around it (well under a millisecond).
		if time.Duration(slow[i][0]) < e.Start || time.Duration(slow[i][1]) > e.End || it-cb > 2*time.Millisecond {
			t.Errorf("stall %d: iteration [%v, %v] (%v) does not frame the callback [%v, %v] (%v)",
				i, e.Start, e.End, it, time.Duration(slow[i][0]), time.Duration(slow[i][1]), cb)
		}
		// Off-CPU: the 30 ms sleep, plus any preemption (another
		// process on these CPUs), never more than the iteration.
		if e.OffCPU < 29*time.Millisecond || e.OffCPU > it {
			t.Errorf("stall %d: off-CPU %v, want the 30 ms sleep and at most the iteration (%v)", i, e.OffCPU, it)
		}
		stallSeq[e.Seq] = e
	}
	// Each stall's blocked part is its sleep: 30 ms, plus the wakeup.
	sleeps := map[uint32]time.Duration{}
	for _, r := range recs {
		if _, ok := stallSeq[r.LoopSeq]; ok && r.Kind == Blocked {
			sleeps[r.LoopSeq] += r.Blocked + r.RunQueue
		}
	}
	for seq := range stallSeq {
		if d := sleeps[seq]; d < 29*time.Millisecond || d > 35*time.Millisecond {
			t.Errorf("stall (iteration %d): blocked %v, want the 30 ms sleep", seq, d)
		}
	}

	// Tagged records: the stalls' samples and intervals, on the loop thread.
	var onCPU, sleep time.Duration
	var samples uint64
	for _, r := range recs {
		if r.LoopSeq == 0 {
			if r.Kind == OnCPU {
				t.Errorf("on-CPU sample outside any iteration: %+v", r)
			}
			continue
		}
		if r.TID != uint32(loopTID) {
			t.Errorf("iteration-tagged record on thread %d", r.TID)
		}
		if _, ok := stallSeq[r.LoopSeq]; !ok {
			continue // a fast tick
		}
		switch r.Kind {
		case OnCPU:
			onCPU += r.Blocked
			samples += r.Count
		case Blocked:
			sleep += r.Blocked + r.RunQueue
		}
	}
	t.Logf("in stalls: %d samples (%v on CPU), %v off CPU", samples, onCPU, sleep)
	// 12 × 40 ms of CPU at 1 kHz of CPU time: ~480 samples.
	if !testutil.Near(t, float64(samples), 480, 0.15, "on-CPU samples in stalls") {
		t.Errorf("samples %d", samples)
	}
	if !testutil.Near(t, sleep.Seconds(), 0.36, 0.1, "off-CPU time in stalls") {
		t.Errorf("off-CPU %v", sleep)
	}
	var lt *LoopThread
	for i := range threads {
		if threads[i].TID == uint32(loopTID) {
			lt = &threads[i]
		}
	}
	if lt == nil {
		t.Fatalf("loop thread %d not found: %+v", loopTID, summarize(threads))
	}
	if lt.Stalls != 12 || lt.Iterations < 100 || lt.SysNr != 232 {
		t.Errorf("loop thread stats: %d stalls, %d iterations, wait syscall %d; want 12, ≥100, epoll_wait",
			lt.Stalls, lt.Iterations, lt.SysNr)
	}
	var n uint64
	for _, c := range lt.Hist {
		n += c
	}
	if n != lt.Iterations {
		t.Errorf("histogram holds %d iterations of %d", n, lt.Iterations)
	}
}

func summarize(ts []LoopThread) []string {
	var out []string
	for _, lt := range ts {
		out = append(out, strconv.Itoa(int(lt.TID))+": iterations "+strconv.FormatUint(lt.Iterations, 10)+
			" stalls "+strconv.FormatUint(lt.Stalls, 10)+" max "+lt.Max.String()+" sysnr "+strconv.Itoa(int(lt.SysNr)))
	}
	return out
}

func TestLoopBucketBounds(t *testing.T) {
	for _, ns := range []uint64{0, 1, 7, 8, 9, 15, 16, 100, 1000, 123456789, 1 << 40} {
		// The kernel's bucket (loop_bucket in the BPF program).
		b := int(ns)
		if ns >= 8 {
			msb := 63 - bitsLeadingZeros(ns)
			b = msb<<3 | int(ns>>(msb-3))&7
		}
		lo, hi := LoopBucketBounds(b)
		if uint64(lo) > ns || uint64(hi) <= ns {
			t.Errorf("%d ns in bucket %d = [%v, %v)", ns, b, lo, hi)
		}
		if ns >= 8 && float64(hi-lo)/float64(lo) > 0.125+1e-9 {
			t.Errorf("bucket %d too wide: [%v, %v)", b, lo, hi)
		}
	}
}

func bitsLeadingZeros(x uint64) int {
	n := 0
	for i := 63; i >= 0 && x&(1<<i) == 0; i-- {
		n++
	}
	return n
}
