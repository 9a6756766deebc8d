package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"blockprof/internal/testutil"
)

// timeWhere sums a thread's off-CPU seconds over the samples keep accepts.
func timeWhere(t *testing.T, p *profile.Profile, tid int64, keep func(*profile.Sample) bool) float64 {
	t.Helper()
	delay, runq := sampleIndex(t, p, "delay"), sampleIndex(t, p, "runqueue")
	var sum int64
	for _, s := range p.Sample {
		if len(s.NumLabel["tid"]) == 0 || s.NumLabel["tid"][0] != tid || !keep(s) {
			continue
		}
		sum += s.Value[delay] + s.Value[runq]
	}
	return float64(sum) / 1e9
}

func label(s *profile.Sample, key string) string { return strings.Join(s.Label[key], ",") }

// Threads that each block on one known thing: a connect whose SYN is
// retried, an fsync, a nanosleep, a contended mutex, a FIFO read through an
// fd that is then reused for another FIFO, an open of a FIFO, and an idle
// thread pool. Each interval must name what it waited on (as the workload
// itself describes it), for the time the workload measured; the mutex
// waits must name the holder as waker; the pool's workers must be idle.
func TestRecordBlockedOnWhat(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/cwait/cwait.c"), "-O2", "-pthread")
	truth, p, r := profileWorkload(t, bin, nil, "--idle", "--waker-stacks", "--drain-interval", "100ms")
	testutil.CheckTruth(t, truth, cwaitBlocks, nil)
	for _, b := range truth.Blocks {
		if b.Kind != "idle" && b.Target == "" {
			t.Errorf("%s: the workload did not say what it waited on", b.Func)
		}
		if b.Func == "waiter" && b.WakerTID == 0 {
			t.Errorf("waiter: the workload did not name the mutex holder")
		}
		tid := int64(b.TID)
		onTarget := func(s *profile.Sample) bool {
			return label(s, "syscall") == b.Syscall && label(s, "target") == b.Target
		}
		inSyscall := func(s *profile.Sample) bool { return label(s, "syscall") == b.Syscall }
		got := timeWhere(t, p, tid, onTarget)
		all := timeWhere(t, p, tid, inSyscall)
		t.Logf("%s (tid %d) %s on %q: profile %.4fs (%.4fs in the syscall), workload %.4fs",
			b.Func, b.TID, b.Syscall, b.Target, got, all, b.Seconds)
		switch b.Func {
		case "syncer":
			// fsync also runs on the CPU (it submits the writeback), so its
			// off-CPU time is part of the call's; all of it on the file.
			if got <= 0 || got > b.Seconds*1.05 || got < all*0.999 {
				dumpThread(t, p, tid)
				t.Errorf("fsync: %.4fs on %q of %.4fs in fsync; the call took %.4fs", got, b.Target, all, b.Seconds)
			}
		case "worker":
			idle := timeWhere(t, p, tid, func(s *profile.Sample) bool {
				return label(s, "kind") == "idle" && label(s, "idle") == "thread-pool"
			})
			testutil.Near(t, all, b.Seconds, 0.05, "pool worker's wait")
			if all == 0 || idle < 0.99*all {
				dumpThread(t, p, tid)
				t.Errorf("pool worker: %.4fs of %.4fs in futex is idle (thread-pool)", idle, all)
			}
		default:
			if !testutil.Near(t, got, b.Seconds, 0.05, b.Func+" seconds on its target") {
				dumpThread(t, p, tid)
			}
		}
		if b.Kind != "idle" {
			if blocking := timeWhere(t, p, tid, func(s *profile.Sample) bool { return onTarget(s) && label(s, "kind") == "blocking" }); blocking < got*0.999 {
				t.Errorf("%s: %.4fs of %.4fs labelled kind=blocking", b.Func, blocking, got)
			}
		}
		if b.WakerTID != 0 {
			// Every wakeup seen names the holder. A wakeup can go unseen
			// when the kernel never showed the switch-in (README,
			// Limitations: then the interval is recovered without a
			// waker), so most, not all, of the time carries one.
			woken := timeWhere(t, p, tid, func(s *profile.Sample) bool { return onTarget(s) && label(s, "waker") != "" })
			byHolder := timeWhere(t, p, tid, func(s *profile.Sample) bool {
				return onTarget(s) && strings.HasSuffix(label(s, "waker"), fmt.Sprintf("/%d", b.WakerTID))
			})
			if woken < 0.75*got || byHolder < 0.999*woken {
				dumpThread(t, p, tid)
				t.Errorf("%s: %.4fs of %.4fs has a waker, %.4fs of it the holder (tid %d)", b.Func, woken, got, byHolder, b.WakerTID)
			}
			// With --waker-stacks, the kernel path of the wakeup: a futex wake.
			withStack := timeWhere(t, p, tid, func(s *profile.Sample) bool {
				return onTarget(s) && strings.Contains(label(s, "waker_kernel"), "futex_wake")
			})
			if withStack < 0.999*woken {
				t.Errorf("%s: waker kernel stack names futex_wake for only %.4fs of %.4fs woken", b.Func, withStack, woken)
			}
		}
	}
	// The sleep's duration is a numeric label too, and the synthetic leaf
	// frame names the syscall and its target.
	sleeper := testutil.TruthBlock(t, truth, "sleeper")
	byTimer := 0
	for _, s := range p.Sample {
		if sampleTID(s) != int64(sleeper.TID) || label(s, "syscall") != "clock_nanosleep" {
			continue
		}
		if v := s.NumLabel["sleep"]; len(v) != 1 || v[0] != 30e6 || s.NumUnit["sleep"][0] != "nanoseconds" {
			t.Errorf("sleep numeric label %v %v, want 30000000 nanoseconds", v, s.NumUnit["sleep"])
		}
		// Timers wake sleepers from interrupt context, not a thread ("":
		// a wakeup not seen, see above).
		switch w := label(s, "waker"); w {
		case "[interrupt]":
			byTimer++
		case "":
		default:
			t.Errorf("sleeper woken by %q, want [interrupt]", w)
		}
		if st := stackNames(s); len(st) == 0 || !strings.HasPrefix(st[0], "[clock_nanosleep sleep 30ms]") {
			t.Errorf("stack %v, want the leaf frame [clock_nanosleep sleep 30ms]", st)
		}
	}
	if byTimer == 0 {
		t.Error("no sleep woken by a timer interrupt")
	}
	// The first screen tables syscall and target.
	screen := r.stdout.String()
	connector := testutil.TruthBlock(t, truth, "connector")
	// Long targets keep their end (the peer) on the first screen.
	end := connector.Target[max(0, len(connector.Target)-30):]
	if !regexp.MustCompile(`(?m)^  connect +.*` + regexp.QuoteMeta(end) + ` +1 `).MatchString(screen) {
		t.Errorf("no connect row for %q in the first screen", connector.Target)
	}
}

// cwaitBlocks is what cwait reports: one entry per thread, and one per
// FIFO for reuser.
var cwaitBlocks = map[string]int{"connector": 1, "syncer": 1, "sleeper": 1, "waiter": 1, "reuser": 2, "opener": 1, "worker": 3}

// --syscalls keeps only the named syscalls (filtered in the kernel, before
// any stack is walked) and --target only the matching targets.
func TestRecordSyscallAndTargetFilters(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/cwait/cwait.c"), "-O2", "-pthread")
	truth, p, _ := profileWorkload(t, bin, nil, "-q", "--syscalls", "read,openat", "--target", "^fifo ")
	testutil.CheckTruth(t, truth, cwaitBlocks, nil)
	var want float64
	var tid int64
	for _, b := range truth.Blocks {
		if b.Func != "reuser" {
			continue
		}
		if tid != 0 && tid != int64(b.TID) {
			t.Fatalf("reuser entries on threads %d and %d, want one thread", tid, b.TID)
		}
		want += b.Seconds
		tid = int64(b.TID)
	}
	for _, s := range p.Sample {
		if label(s, "syscall") != "read" || !strings.HasPrefix(label(s, "target"), "fifo ") {
			t.Errorf("sample outside the filters: syscall=%q target=%q", label(s, "syscall"), label(s, "target"))
		}
	}
	got := timeWhere(t, p, tid, func(*profile.Sample) bool { return true })
	testutil.Near(t, got, want, 0.05, "reuser's FIFO reads")
}
