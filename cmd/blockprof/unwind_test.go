package main

import (
	"path/filepath"
	"strings"
	"testing"

	"blockprof/internal/testutil"
)

// A C program whose blocking functions call Debian's libc (no frame
// pointers), built with and without frame pointers of its own: with
// .eh_frame unwinding, both show block_here and reader_thread with their
// callers out to main and the thread's start, times within 5 %; with frame
// pointers only (--unwind=false), the walk through libc loses them, which
// is what this test exists to catch.
func TestRecordUnwindWithoutFramePointers(t *testing.T) {
	testutil.RequireRoot(t)
	src := filepath.Join(testutil.RepoRoot(t), "testdata/workloads/cnofp/cnofp.c")
	want := map[string][]string{
		"block_here":    {"clock_nanosleep", "block_here", "main", "__libc_start_main"},
		"reader_thread": {"read", "reader_thread", "start_thread"},
	}
	for _, build := range []struct{ name, flag string }{
		{"omit-frame-pointer", "-fomit-frame-pointer"},
		{"frame-pointer", "-fno-omit-frame-pointer"},
	} {
		t.Run(build.name, func(t *testing.T) {
			bin := testutil.BuildC(t, src, "-O2", "-g", "-pthread", build.flag)
			truth, p, _ := profileWorkload(t, bin, nil, "-q")
			for _, b := range truth.Blocks {
				got, stack := offCPU(t, p, int64(b.TID), b.Func)
				t.Logf("%s: profile %.4fs, workload %.4fs; stack %v", b.Func, got, b.Seconds, stack)
				if !testutil.Near(t, got, b.Seconds, 0.05, b.Func+" off-CPU seconds") {
					dumpThread(t, p, int64(b.TID))
				}
				last := -1
				for _, fn := range want[b.Func] {
					i := -1
					for j, f := range stack {
						if strings.Contains(f, fn) && j > last {
							i = j
							break
						}
					}
					if i < 0 {
						t.Errorf("%s: %s missing (or out of order) in %v", b.Func, fn, stack)
						break
					}
					last = i
				}
			}
		})
	}
	t.Run("frame-pointers-only", func(t *testing.T) {
		bin := testutil.BuildC(t, src, "-O2", "-g", "-pthread", "-fomit-frame-pointer")
		truth, p, _ := profileWorkload(t, bin, nil, "-q", "--unwind=false")
		b, _ := truth.Block("block_here")
		if got, stack := offCPU(t, p, int64(b.TID), "block_here"); got > 0 {
			t.Errorf("frame pointers alone found block_here through libc (%.4fs): %v; the test cannot tell", got, stack)
		}
	})
}
