package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every workload builds, follows the ready/go/truth protocol, and measures
// what its design says it must: the ground truth the profiler tests trust.
// No root needed.

// within checks lo <= got <= hi. Sleeps never end early, so lower bounds
// are tight; upper bounds leave room for wake-up latency on a loaded CI
// machine.
func within(t *testing.T, got, lo, hi float64, what string) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %.4f, want in [%.4f, %.4f]", what, got, lo, hi)
	} else {
		t.Logf("%s = %.4f in [%.4f, %.4f]", what, got, lo, hi)
	}
}

func checkThreadsOf(t *testing.T, pid int, tids map[string]int, roles ...string) {
	t.Helper()
	seen := map[int]string{}
	for _, r := range roles {
		tid, ok := tids[r]
		if !ok {
			t.Fatalf("ready line lacks %s=TID: %v", r, tids)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); err != nil {
			t.Errorf("%s=%d is not a thread of %d: %v", r, tid, pid, err)
		}
		if other, dup := seen[tid]; dup {
			t.Errorf("%s and %s share tid %d", r, other, tid)
		}
		seen[tid] = r
	}
}

func runWorkload(t *testing.T, bin string, roles []string, args ...string) (Truth, map[string]int, *Workload) {
	t.Helper()
	w := Start(t, bin, args...)
	w.Ready(t)
	tids := w.TIDs()
	checkThreadsOf(t, w.PID(), tids, roles...)
	w.Go(t)
	tr, err := w.Wait(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return tr, tids, w
}

func mustBlock(t *testing.T, tr Truth, fn string) Block {
	t.Helper()
	b, ok := tr.Block(fn)
	if !ok {
		t.Fatalf("truth has no %s: %+v", fn, tr)
	}
	return b
}

func TestGoblockTruth(t *testing.T) {
	for _, ldflags := range [][]string{nil, {"-s", "-w"}} {
		t.Run(fmt.Sprint(ldflags), func(t *testing.T) {
			bin := BuildGo(t, "goblock", ldflags...)
			const n = 10
			tr, tids, _ := runWorkload(t, bin, []string{"reader", "sleeper", "writer"}, "-n", strconv.Itoa(n))
			sl := mustBlock(t, tr, "blockNanosleep")
			rd := mustBlock(t, tr, "blockRead")
			if sl.TID != tids["sleeper"] || rd.TID != tids["reader"] {
				t.Errorf("truth tids %d/%d, ready line %v", sl.TID, rd.TID, tids)
			}
			if sl.Count != n || rd.Count != n || sl.Syscall != "nanosleep" || rd.Syscall != "read" {
				t.Errorf("counts/syscalls: %+v %+v", sl, rd)
			}
			within(t, sl.Seconds, n*0.020, n*0.020*1.25, "blockNanosleep seconds")
			// Each read waits for the writer's next 50 ms tick.
			within(t, rd.Seconds, n*0.050*0.95, n*0.050*1.25, "blockRead seconds")
		})
	}
}

func TestGosleepTruth(t *testing.T) {
	bin := BuildGo(t, "gosleep")
	const g, d = 3, 0.5
	tr, _, _ := runWorkload(t, bin, nil, "-g", strconv.Itoa(g), "-d", "500ms")
	b := mustBlock(t, tr, "sleepLoop")
	// Each goroutine sleeps until d has passed: at least d, at most about
	// one extra 10 ms sleep more.
	within(t, b.Seconds, g*d*0.98, g*(d+0.010)*1.25, "total goroutine sleep seconds")
	within(t, float64(b.Count), g*d/0.010*0.5, g*(d/0.010+1), "time.Sleep calls")
}

func TestCblockTruth(t *testing.T) {
	for _, fp := range []string{"-fno-omit-frame-pointer", "-fomit-frame-pointer"} {
		t.Run(fp, func(t *testing.T) {
			bin := BuildC(t, "cblock/cblock.c", "-O2", fp, "-Werror")
			tr, tids, w := runWorkload(t, bin, []string{"main", "reader", "writer"}, "-n", "10", "-r", "5")
			bh := mustBlock(t, tr, "block_here")
			rd := mustBlock(t, tr, "reader_thread")
			if bh.TID != w.PID() || bh.TID != tids["main"] || rd.TID != tids["reader"] {
				t.Errorf("tids: block_here %d reader %d, pid %d, ready %v", bh.TID, rd.TID, w.PID(), tids)
			}
			within(t, bh.Seconds, 10*0.020, 10*0.020*1.25, "block_here seconds")
			within(t, rd.Seconds, 5*0.030*0.95, 5*0.030*1.25, "reader_thread seconds")
		})
	}
}

func TestCpuhogTruth(t *testing.T) {
	bin := BuildC(t, "cpuhog/cpuhog.c", "-O2", "-Werror")
	tr, tids, _ := runWorkload(t, bin, []string{"spin1", "spin2"}, "-s", "0.5")
	if len(tr.CPU) != 2 || len(tr.Blocks) != 0 {
		t.Fatalf("want 2 cpu entries and no blocks: %+v", tr)
	}
	var cpu, wall float64
	for i, c := range tr.CPU {
		if c.TID != tids[fmt.Sprintf("spin%d", i+1)] {
			t.Errorf("cpu entry %d tid %d, ready %v", i, c.TID, tids)
		}
		within(t, c.Wall, 0.5, 0.6, "spin wall seconds")
		// Sharing one CPU, each gets about half; well under all of it.
		within(t, c.Seconds/c.Wall, 0.15, 0.85, "on-CPU share")
		cpu += c.Seconds
		wall = max(wall, c.Wall)
	}
	// Pinned to one CPU, together they cannot get more than its time.
	if cpu > wall*1.05 {
		t.Errorf("threads ran %.3fs on CPU in %.3fs wall: not sharing one CPU", cpu, wall)
	}
}

func TestPingpongTruth(t *testing.T) {
	bin := BuildC(t, "pingpong/pingpong.c", "-O2", "-Werror")
	for _, args := range [][]string{{"-d", "0.3"}, {"-d", "0.3", "-p"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			tr, _, w := runWorkload(t, bin, []string{"ping", "pong"}, args...)
			rate := mustRate(t, w.Stdout())
			ping, pong := mustBlock(t, tr, "ping"), mustBlock(t, tr, "pong")
			if ping.Count != pong.Count || ping.Count <= 0 {
				t.Errorf("ping %d round trips, pong %d", ping.Count, pong.Count)
			}
			// Order of magnitude only: ~230k/s idle, far less under load.
			within(t, rate, 5e3, 5e6, "round trips per second")
			within(t, float64(ping.Count)/rate, 0.3*0.9, 0.3*1.2, "seconds from count/rate")
			if args[len(args)-1] != "-p" {
				// Pinned: each round trip is two voluntary switches.
				sw, err := StdoutValue(w.Stdout(), "ctxt_switches_per_sec")
				if err != nil {
					t.Fatal(err)
				}
				within(t, sw/rate, 1.9, 2.3, "context switches per round trip")
			}
		})
	}
}

func TestPingpongStopsOnSIGTERM(t *testing.T) {
	bin := BuildC(t, "pingpong/pingpong.c", "-O2")
	w := Start(t, bin, "-d", "60")
	w.Ready(t)
	w.Go(t)
	time.Sleep(200 * time.Millisecond)
	if err := w.Signal(15); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := w.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v to stop after SIGTERM", d)
	}
	if rate := mustRate(t, w.Stdout()); rate <= 0 {
		t.Errorf("rate %v after SIGTERM", rate)
	}
}

func TestForkerTruth(t *testing.T) {
	bin := BuildC(t, "forker/forker.c", "-O2", "-fno-omit-frame-pointer", "-Werror")
	// No ready/go: it runs at once, as under `blockprof record -- CMD`.
	w := Start(t, bin, "-n", "5")
	tr, err := w.Wait(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Blocks) != 3 {
		t.Fatalf("want parent + 2 children: %+v", tr)
	}
	pids := map[int]bool{}
	for i, b := range tr.Blocks {
		want := "child_block"
		if i == 0 {
			want = "parent_block"
			if b.PID != w.PID() {
				t.Errorf("parent entry pid %d, process %d", b.PID, w.PID())
			}
		}
		if b.Func != want || b.TID != b.PID || b.Count != 5 {
			t.Errorf("entry %d: %+v", i, b)
		}
		pids[b.PID] = true
		within(t, b.Seconds, 5*0.020, 5*0.020*1.25, b.Func+" seconds")
	}
	if len(pids) != 3 {
		t.Errorf("pids not distinct: %+v", tr.Blocks)
	}
}

func mustRate(t *testing.T, stdout string) float64 {
	t.Helper()
	rate, err := RoundtripsPerSec(stdout)
	if err != nil {
		t.Fatal(err)
	}
	return rate
}

func TestCloopTruth(t *testing.T) {
	bin := BuildC(t, "cloop/cloop.c", "-O1", "-Werror")
	const n = 4
	tr, tids, _ := runWorkload(t, bin, []string{"loop", "feeder"}, strconv.Itoa(n))
	req, idle, feed := mustBlock(t, tr, "handle_request"), mustBlock(t, tr, "run_loop"), mustBlock(t, tr, "feed")
	if len(tr.Blocks) != 3 || len(tr.CPU) != 1 || tr.CPU[0].Func != "handle_spin" {
		t.Fatalf("want handle_request, run_loop, feed and handle_spin: %+v", tr)
	}
	spin := tr.CPU[0]
	if req.TID != tids["loop"] || idle.TID != tids["loop"] || spin.TID != tids["loop"] || feed.TID != tids["feeder"] {
		t.Errorf("tids: %+v, ready %v", tr, tids)
	}
	if req.Count != n || spin.Count != n/2 || feed.Count != n+1 || idle.Kind != "idle" || idle.Count < n+1 {
		t.Errorf("counts: handle_request %d (want %d), handle_spin %d (want %d), feed %d (want %d), run_loop %d (want ≥ %d, idle)",
			req.Count, n, spin.Count, n/2, feed.Count, n+1, idle.Count, n+1)
	}
	within(t, req.Seconds, n*0.030, n*0.030*1.25, "handle_request seconds")
	within(t, spin.Seconds, n/2*0.020, n/2*0.020*1.25, "handle_spin CPU seconds")
	within(t, feed.Seconds, (n+1)*0.060, (n+1)*0.060*1.25, "feed seconds")
}

func TestEpollidleTruth(t *testing.T) {
	bin := BuildC(t, "epollidle/epollidle.c", "-O2", "-Werror")
	tr, tids, _ := runWorkload(t, bin, []string{"loop", "worker"}, "-n", "10")
	loop, worker := mustBlock(t, tr, "loop_wait"), mustBlock(t, tr, "worker_sleep")
	if len(tr.Blocks) != 2 || len(tr.CPU) != 0 {
		t.Fatalf("want loop_wait and worker_sleep only: %+v", tr)
	}
	if loop.TID != tids["loop"] || worker.TID != tids["worker"] || loop.Count != 10 || worker.Count != 5 {
		t.Errorf("entries %+v %+v, ready %v", loop, worker, tids)
	}
	within(t, loop.Seconds, 10*0.020, 10*0.020*1.25, "loop_wait seconds")
	within(t, worker.Seconds, 5*0.020, 5*0.020*1.25, "worker_sleep seconds")
}
