package profiles

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"blockprof/internal/symbolize"
)

// summary lays the first screen out 100 columns wide unless opts says.
func summary(p *Profile, opts SummaryOptions) string {
	if opts.Width == 0 {
		opts.Width = 100
	}
	var buf bytes.Buffer
	WriteSummary(&buf, p, opts)
	return buf.String()
}

func checkScreen(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) > 40 {
		t.Errorf("%d lines, want at most 40", len(lines))
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	return lines
}

func containsLine(t *testing.T, lines []string, want string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(l, want) {
			return
		}
	}
	t.Errorf("no line contains %q in:\n%s", want, strings.Join(lines, "\n"))
}

func TestSummaryFixture(t *testing.T) {
	f := newFixture()
	out := summary(f.p, SummaryOptions{File: "out/block.pb.gz"})
	lines := checkScreen(t, out)
	for _, want := range []string{
		"blockprof: recorded 10.00s, 2 targets, 2,183 off-CPU intervals",
		"off-CPU: 3.44s blocked (switch-out to wakeup) + 75.1ms run-queue",
		"pid 100     server                   blocked    2.06s  run-queue   64.0ms",
		"pid 200     worker (exited)          blocked    1.38s  run-queue   11.1ms",
		"stacks by blocked time:",
		// Two reader threads at one place are one line.
		// The libc call it made follows the application frame; callers
		// go first when the line is full.
		"  1.50s  43.6%   x30 S  server: block_read (io.c:31) ← handle_conn → libc read  [read → pipe_read]",
		// Go syscall wrappers skipped, the standard-library call named.
		"900.0ms  26.2%    x2 S  worker: main.blockRead (main.go:31) → os.(*File).Read  [read → pipe_read]",
		// libc and pthread frames are the call, clipped in the middle.
		"server: queue_pop (queue.c:12) → libc pt…nd_wait  [futex → futex_wait_queue]",
		// runtime sleep wrappers skipped, inlined frame counts.
		"worker: runtime.stopm (proc.go:2905)",
		"worker: runtime.sysmon (proc.go:6200)  [clock_nanosleep → do_nanosleep]",
		"server: 0x7fff12345678  [epoll_wait → do_epoll_wait]",
		" 10.0ms   0.3%    x3 D  server: [unknown stack]",
		"drops: 12 (ringbuf_full 10, stack_missing 2)",
		"open: go tool pprof -http=:0 out/block.pb.gz",
	} {
		containsLine(t, lines, want)
	}
	// Order: heaviest first.
	if i, j := strings.Index(out, "block_read"), strings.Index(out, "main.blockRead"); i < 0 || j < i {
		t.Error("stacks not ordered by blocked time")
	}
	// The preempted sample has no blocked time and no line.
	if strings.Contains(out, "compute") {
		t.Error("preempted stack listed under blocked time")
	}

	// Deterministic whatever the sample order.
	rev := newFixture()
	for i, j := 0, len(rev.p.Samples)-1; i < j; i, j = i+1, j-1 {
		rev.p.Samples[i], rev.p.Samples[j] = rev.p.Samples[j], rev.p.Samples[i]
	}
	if got := summary(rev.p, SummaryOptions{File: "out/block.pb.gz"}); got != out {
		t.Errorf("sample order changed the summary:\n%s\nvs\n%s", got, out)
	}
}

func TestSummaryTopAndEmpty(t *testing.T) {
	f := newFixture()
	f.p.Drops = nil
	out := summary(f.p, SummaryOptions{Top: 2})
	lines := checkScreen(t, out)
	containsLine(t, lines, "top 2 of 7 stacks by blocked time:")
	containsLine(t, lines, "no drops")
	if strings.Contains(out, "queue_pop") || strings.Contains(out, "go tool pprof") {
		t.Errorf("more than top 2, or open hint without a file:\n%s", out)
	}

	lines = checkScreen(t, summary(&Profile{Duration: time.Second}, SummaryOptions{}))
	containsLine(t, lines, "recorded 1.00s, 0 targets, 0 off-CPU intervals")
	containsLine(t, lines, "no blocked time recorded")
}

func TestSummaryManyTargetsAndLongNames(t *testing.T) {
	p := &Profile{Duration: time.Minute, Processes: map[int]Process{}}
	long := symbolize.Location{Address: 0x10, Mapping: &symbolize.Mapping{File: "/app", HasFunctions: true},
		Frames: []symbolize.Frame{{Function: "github.com/example/averyveryverylongmodulename/internal/" +
			"pkg.(*SomeType).AnExtremelyLongMethodNameThatGoesOnAndOn", File: "/src/x.go", Line: 9}}}
	for pid := 1; pid <= 30; pid++ {
		p.Processes[pid] = Process{PID: pid, Comm: "proc-with-a-long-name"}
		p.Samples = append(p.Samples, Sample{Stack: []symbolize.Location{long}, PID: pid, TID: pid,
			Comm: "proc-with-a-long-name", State: "S", Count: 1, Blocked: time.Duration(pid) * time.Millisecond})
	}
	lines := checkScreen(t, summary(p, SummaryOptions{Top: 20, File: "/a path/with spaces/f.pb.gz"}))
	containsLine(t, lines, "… and 22 more")
	containsLine(t, lines, "pid 30 ")
	containsLine(t, lines, "open: go tool pprof -http=:0 '/a path/with spaces/f.pb.gz'")
	containsLine(t, lines, "465.0ms 100.0%   x30 S  github.com/example/")
}

func TestTellingFrames(t *testing.T) {
	f := newFixture()
	kernOnly := kframes(f.kern, 0xffffffff81700000, "__schedule", "schedule", "worker_thread", "kthread",
		"ret_from_fork")
	libcOnly := []symbolize.Location{
		loc(f.libc, 0x7f0000091116, symbolize.Frame{Function: "__futex_abstimed_wait_common64"}),
		loc(f.libc, 0x7f0000093a40, symbolize.Frame{Function: "pthread_cond_wait"}),
	}
	for _, tc := range []struct {
		name  string
		stack []symbolize.Location
		n     int
		want  []string
	}{
		{"inlined C", f.readStack, 3, []string{"block_read (io.c:31)", "handle_conn (server.c:60)", "main (server.c:90)"}},
		{"past the end", f.readStack, 5, []string{"block_read (io.c:31)", "handle_conn (server.c:60)",
			"main (server.c:90)", "[libc.so.6+0x29d8f]"}},
		{"libc wrappers", f.futexStack, 2, []string{"queue_pop (queue.c:12)", "worker_main (server.c:120)"}},
		{"go syscall", f.goReadStack, 2, []string{"main.blockRead (main.go:31)", "main.main (main.go:60)"}},
		{"go idle M", f.goIdleStack, 2, []string{"runtime.stopm (proc.go:2905)", "runtime.findRunnable (proc.go:3582)"}},
		{"go sysmon", f.goSleepStack, 1, []string{"runtime.sysmon (proc.go:6200)"}},
		{"only wrappers", libcOnly, 1, []string{"__futex_abstimed_wait_common64"}},
		{"kernel thread", kernOnly, 2, []string{"worker_thread", "kthread"}},
		{"empty", nil, 3, []string{"[unknown stack]"}},
		{"none wanted", f.readStack, 0, nil},
	} {
		got := TellingFrames(Sample{Stack: tc.stack}, tc.n)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestKernelWhere(t *testing.T) {
	f := newFixture()
	for _, tc := range []struct {
		name string
		s    Sample
		want string
	}{
		{"pipe", Sample{Stack: f.readStack}, "read → pipe_read"},
		{"futex", Sample{Stack: f.futexStack}, "futex → futex_wait_queue"},
		{"label wins", Sample{Stack: f.readStack, Labels: map[string]string{"syscall": "readv"}}, "readv → pipe_read"},
		// Preemption is all scheduler and interrupt plumbing.
		{"preempted", Sample{Stack: f.p.Samples[4].Stack}, ""},
		{"no kernel", Sample{Stack: f.readStack[8:]}, ""},
		{"label only", Sample{Labels: map[string]string{"syscall": "poll"}}, "poll"},
	} {
		if got := KernelWhere(tc.s); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Idle samples leave the ranking and the totals, and get one line.
func TestSummaryIdle(t *testing.T) {
	f := newFixture()
	before := summary(f.p, SummaryOptions{})
	f.p.Samples[0].Kind = KindIdle
	idleTime := f.p.Samples[0].Blocked + f.p.Samples[0].RunQueue
	out := summary(f.p, SummaryOptions{})
	lines := checkScreen(t, out)
	containsLine(t, lines, "idle (waiting for work, not ranked below): "+fmtDur(idleTime))
	if out == before || strings.Contains(before, "idle (") {
		t.Errorf("idle line or ranking unchanged:\n%s", out)
	}
	if strings.Count(out, "\n") > 41 {
		t.Errorf("summary grew past one screen")
	}
}

// The syscall and target table follows the stacks, one row per pair,
// bounded; idle rows are left out, long targets keep their end.
func TestSummaryLatency(t *testing.T) {
	f := newFixture()
	for i := 0; i < 9; i++ {
		f.p.Latency = append(f.p.Latency, Latency{Syscall: fmt.Sprintf("sys%d", i), Count: 3, Total: time.Second,
			P50: time.Millisecond, P99: 8 * time.Millisecond, Max: 9 * time.Millisecond})
	}
	f.p.Latency[1].Target = "file /var/lib/a-rather-long-directory-name/app/wal.log"
	f.p.Latency[2].Idle = true
	// 93 columns leave the target column 35 wide.
	lines := checkScreen(t, summary(f.p, SummaryOptions{Width: 93}))
	containsLine(t, lines, "by syscall and target (single intervals; idle left out):")
	containsLine(t, lines, "  sys0            -                                        3    1.00s   1.0ms   8.0ms   9.0ms")
	containsLine(t, lines, "  sys1            …er-long-directory-name/app/wal.log      3    1.00s   1.0ms   8.0ms   9.0ms")
	containsLine(t, lines, "  … and 2 more")
	for _, l := range lines {
		if strings.HasPrefix(l, "  sys2 ") {
			t.Errorf("idle row shown: %q", l)
		}
	}
}

// Losses of detail (a stack, a target) keep totals exact; losses of
// intervals do not, and the drop line says which.
func TestDropLineVerdict(t *testing.T) {
	for _, tc := range []struct {
		drops map[string]uint64
		want  string
	}{
		{map[string]uint64{}, "no drops"},
		{map[string]uint64{"syscall_arg_unreadable": 1, "user_stack_collision": 2},
			"drops: 3 (user_stack_collision 2, syscall_arg_unreadable 1) — some detail missing, totals exact"},
		{map[string]uint64{"syscall_arg_unreadable": 1, "aggregation_full": 1},
			"drops: 2 (aggregation_full 1, syscall_arg_unreadable 1) — totals above are low"},
	} {
		if got := dropLine(tc.drops); got != tc.want {
			t.Errorf("dropLine(%v) = %q, want %q", tc.drops, got, tc.want)
		}
	}
}
