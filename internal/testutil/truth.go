package testutil

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// CheckTruth fails the test at once unless a workload's truth holds
// exactly the entries the test expects: blocks and cpu map each function
// to its number of entries (one per thread or process), and every entry
// names a thread and a positive time. Tests then loop over the truth's
// entries; without this, an entry the workload did not write would be a
// check that never ran, and a zero time would match a profile that saw
// nothing.
func CheckTruth(t testing.TB, tr Truth, blocks, cpu map[string]int) {
	t.Helper()
	var bad []string
	gotBlocks := map[string]int{}
	for _, b := range tr.Blocks {
		gotBlocks[b.Func]++
		if b.TID <= 0 || !(b.Seconds > 0) {
			bad = append(bad, fmt.Sprintf("block %+v has no thread or no time", b))
		}
	}
	gotCPU := map[string]int{}
	for _, c := range tr.CPU {
		gotCPU[c.Func]++
		if c.TID <= 0 || !(c.Seconds > 0) || !(c.Wall > 0) {
			bad = append(bad, fmt.Sprintf("cpu %+v has no thread or no time", c))
		}
	}
	bad = append(bad, countDiff("blocks", gotBlocks, blocks)...)
	bad = append(bad, countDiff("cpu", gotCPU, cpu)...)
	if len(bad) > 0 {
		t.Fatalf("the workload's truth is not what the test checks:\n  %s\ntruth: %+v", strings.Join(bad, "\n  "), tr)
	}
}

func countDiff(what string, got, want map[string]int) []string {
	var out []string
	for fn, n := range want {
		if got[fn] != n {
			out = append(out, fmt.Sprintf("%s: %d entries for %s, want %d", what, got[fn], fn, n))
		}
	}
	for fn, n := range got {
		if _, ok := want[fn]; !ok {
			out = append(out, fmt.Sprintf("%s: %d unexpected entries for %s", what, n, fn))
		}
	}
	sort.Strings(out)
	return out
}

// TruthBlock is the truth's one entry for fn; the test fails at once if
// there is none, more than one, or one without a thread or a time.
func TruthBlock(t testing.TB, tr Truth, fn string) Block {
	t.Helper()
	var found []Block
	for _, b := range tr.Blocks {
		if b.Func == fn {
			found = append(found, b)
		}
	}
	if len(found) != 1 || found[0].TID <= 0 || !(found[0].Seconds > 0) {
		t.Fatalf("the workload's truth has %d entries for %s, want one with a thread and a time: %+v", len(found), fn, tr)
	}
	return found[0]
}

// TruthCPU is TruthBlock for an on-CPU entry.
func TruthCPU(t testing.TB, tr Truth, fn string) CPU {
	t.Helper()
	var found []CPU
	for _, c := range tr.CPU {
		if c.Func == fn {
			found = append(found, c)
		}
	}
	if len(found) != 1 || found[0].TID <= 0 || !(found[0].Seconds > 0) {
		t.Fatalf("the workload's truth has %d cpu entries for %s, want one with a thread and a time: %+v", len(found), fn, tr)
	}
	return found[0]
}
