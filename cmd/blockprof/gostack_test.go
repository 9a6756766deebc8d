package main

import (
	"path/filepath"
	"strings"
	"testing"

	"blockprof/internal/testutil"
)

// A Go program launched under blockprof blocks before its unwind tables
// can be loaded (the runtime's first threads park within microseconds of
// the exec). Go code never needs tables, so none of its stacks may carry
// the before-tables mark (which would give one call site a second root).
func TestRecordGoStacksNeedNoTables(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/goblock"))
	// --idle keeps the scheduler's own parks: they are the stacks walked
	// first, before any table could load.
	r := startRecordStdin(t, "go\n", "-q", "--idle", "--", bin, "-n", "10")
	p := r.wait(t)
	if len(p.Sample) == 0 {
		t.Fatal("no samples")
	}
	roots := map[string]int{}
	for _, s := range p.Sample {
		st := stackNames(s)
		for _, f := range st {
			if strings.Contains(f, "before unwind tables") {
				t.Fatalf("Go stack marked as walked before tables: %v", st)
			}
		}
		roots[st[len(st)-1]]++
	}
	t.Logf("roots: %v", roots)
	for _, c := range p.Comments {
		if strings.Contains(c, "user_stack_before_tables") {
			t.Errorf("walks of Go code counted as before tables: %s", c)
		}
	}
}
