package profiles

import (
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"blockprof/internal/symbolize"
)

func folded(t *testing.T, p *Profile, opts FoldedOptions) []string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteFolded(&buf, p, opts); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("output does not end in a newline: %q", out)
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

func TestFoldedSmall(t *testing.T) {
	exe := &symbolize.Mapping{Start: 0x1000, Limit: 0x9000, Offset: 0x1000, File: "/bin/app"}
	kern := &symbolize.Mapping{File: "[kernel.kallsyms]", Start: 0xffff0000, Limit: ^uint64(0)}
	stack := []symbolize.Location{
		{Address: 0xffff0100, Mapping: kern, Frames: []symbolize.Frame{{Function: "schedule"}}},
		{Address: 0x1200, Mapping: exe, Frames: []symbolize.Frame{
			{Function: "leaf;inlined\nname"}, {SystemName: "_Z5outerv"},
		}},
		{Address: 0x1300, Mapping: exe}, // unresolved: file and offset
		{Address: 0x77},                 // unresolved, outside any mapping
	}
	p := &Profile{Samples: []Sample{
		{Stack: stack, PID: 7, TID: 8, Comm: "app", Thread: "t;1", Count: 3,
			Blocked: 2500 * time.Nanosecond, RunQueue: 40},
		{Stack: stack, PID: 7, TID: 9, Comm: "app", Thread: "t2", Count: 1, Blocked: 1000},
		{PID: 5, TID: 5, Count: 2, Blocked: 999},
		{Stack: stack, PID: 7, TID: 9, Comm: "app", Count: 4, RunQueue: 60}, // no blocked time
	}}

	got := folded(t, p, FoldedOptions{})
	want := []string{
		"app;0x77;[app+0x1300];_Z5outerv;leaf:inlined name;schedule 3500",
		"pid 5;[unknown stack] 999",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("folded:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, tc := range []struct {
		opts FoldedOptions
		want []string
	}{
		{FoldedOptions{Value: FoldedBlockedMicros}, []string{
			"app;0x77;[app+0x1300];_Z5outerv;leaf:inlined name;schedule 3"}},
		{FoldedOptions{Value: FoldedCount}, []string{
			"app;0x77;[app+0x1300];_Z5outerv;leaf:inlined name;schedule 8", "pid 5;[unknown stack] 2"}},
		{FoldedOptions{Value: FoldedRunQueue}, []string{
			"app;0x77;[app+0x1300];_Z5outerv;leaf:inlined name;schedule 100"}},
		{FoldedOptions{Threads: true, KernelSuffix: true}, []string{
			"app;t2;0x77;[app+0x1300];_Z5outerv;leaf:inlined name;schedule_[k] 1000",
			"app;t:1;0x77;[app+0x1300];_Z5outerv;leaf:inlined name;schedule_[k] 2500",
			"pid 5;tid 5;[unknown stack] 999"}},
	} {
		got := folded(t, p, tc.opts)
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%+v:\n%s\nwant:\n%s", tc.opts, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}

	if err := WriteFolded(&bytes.Buffer{}, p, FoldedOptions{Value: 99}); err == nil {
		t.Error("unknown value accepted")
	}
}

func TestFoldedFixture(t *testing.T) {
	f := newFixture()
	lines := folded(t, f.p, FoldedOptions{})
	if !sort.StringsAreSorted(lines) {
		t.Error("lines not sorted")
	}
	var sum int64
	seen := map[string]bool{}
	for _, l := range lines {
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseInt(l[i+1:], 10, 64)
		if i < 0 || err != nil {
			t.Fatalf("bad line %q", l)
		}
		if seen[l[:i]] {
			t.Errorf("stack twice: %q", l[:i])
		}
		seen[l[:i]] = true
		sum += v
	}
	if sum != f.blocked.Nanoseconds() {
		t.Errorf("sum %d, want %d", sum, f.blocked.Nanoseconds())
	}
	want := "server;[libc.so.6+0x29d8f];main;handle_conn;block_read;__GI___libc_read;" +
		"entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_read;ksys_read;vfs_read;pipe_read;" +
		"schedule;__schedule 1500000000"
	if !seen[strings.TrimSuffix(want, " 1500000000")] || !strings.Contains(strings.Join(lines, "\n"), want) {
		t.Errorf("two reader threads not merged into %q:\n%s", want, strings.Join(lines, "\n"))
	}

	// Same input, same bytes.
	again := folded(t, f.p, FoldedOptions{})
	if strings.Join(again, "\n") != strings.Join(lines, "\n") {
		t.Error("output not deterministic")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestFoldedWriteError(t *testing.T) {
	err := WriteFolded(failWriter{}, newFixture().p, FoldedOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("error %v", err)
	}
}

// A loop-mode profile folds to its stall samples, weighted by stall time
// in nanoseconds (one number per line); FoldedBlocked still gives the
// off-CPU view of the same recording.
func TestFoldedLoopMode(t *testing.T) {
	p := serviceFixture()
	lines := folded(t, p, FoldedOptions{})
	var total int64
	for _, l := range lines {
		i := strings.LastIndexByte(l, ' ')
		n, err := strconv.ParseInt(l[i+1:], 10, 64)
		if err != nil || strings.Count(l[i+1:], " ") != 0 {
			t.Fatalf("line %q: not one number at the end", l)
		}
		total += n
	}
	var want int64
	for _, s := range p.Samples {
		if s.Loop != nil {
			want += s.Loop.Total().Nanoseconds()
		}
	}
	if total != want || want == 0 {
		t.Errorf("folded stall time %d ns, want %d", total, want)
	}
	if !strings.Contains(strings.Join(lines, "\n"), ";get_user;ListCommands.blpop;") {
		t.Errorf("no get_user → blpop stall line:\n%s", strings.Join(lines, "\n"))
	}
	blocked := folded(t, p, FoldedOptions{Value: FoldedBlocked})
	if strings.Contains(strings.Join(blocked, "\n"), "render_report") {
		t.Error("on-CPU stall time in the blocked view")
	}
}
