package gopclntab

import (
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// TestAgainstOwnRuntime checks the innermost frame of pcs all over this
// test binary against runtime.FuncForPC, which knows about inlining.
func TestAgainstOwnRuntime(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	tb, _ := openTable(t, exe)
	static, ok := funcEntry(tb, "blockprof/internal/symbolize/gopclntab.TestAgainstOwnRuntime")
	if !ok {
		t.Fatal("own test function not in table")
	}
	bias := uint64(reflect.ValueOf(TestAgainstOwnRuntime).Pointer()) - static
	pcs := samplePCs(tb, 8)
	bad, inlined := 0, 0
	for _, pc := range pcs {
		fn := runtime.FuncForPC(uintptr(pc + bias))
		got := tb.Lookup(pc)
		if fn == nil {
			if got != nil {
				t.Errorf("Lookup(%#x) = %+v, runtime knows no function", pc, got)
				bad++
			}
			continue
		}
		file, line := fn.FileLine(uintptr(pc + bias))
		// The runtime prints no name for the function at name offset 0
		// and elides generic shapes; compare in its terms.
		name := ""
		if len(got) > 0 && fn.Name() != "" {
			name = printName(got[0].Function)
		}
		if len(got) == 0 || name != fn.Name() || got[0].File != file || got[0].Line != line {
			t.Errorf("Lookup(%#x) = %+v, runtime says %s %s:%d", pc, got, fn.Name(), file, line)
			if bad++; bad > 10 {
				t.Fatal("too many mismatches")
			}
		}
		if len(got) > 1 {
			inlined++
		}
	}
	t.Logf("%d pcs agree with runtime.FuncForPC, %d of them inlined", len(pcs), inlined)
	if inlined == 0 {
		t.Error("no inlined pcs checked")
	}
}

// printName mimics how the runtime prints generic instantiations.
func printName(s string) string {
	i := strings.IndexByte(s, '[')
	j := strings.LastIndexByte(s, ']')
	if i < 0 || j <= i {
		return s
	}
	return s[:i] + "[...]" + s[j+1:]
}

// TestConcurrentLookup hammers one table from several goroutines; run
// with -race to check the cache locking.
func TestConcurrentLookup(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	tb, _ := openTable(t, exe)
	pcs := samplePCs(tb, 2)
	want := make([][]Frame, 0, 500)
	for i := 0; i < 500; i++ {
		want = append(want, tb.Lookup(pcs[i*len(pcs)/500]))
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for k := 0; k < 2000; k++ {
				i := (k*7 + g) % 500
				got := tb.Lookup(pcs[i*len(pcs)/500])
				if !reflect.DeepEqual(got, want[i]) {
					t.Errorf("concurrent Lookup differs: %+v vs %+v", got, want[i])
					return
				}
				if len(got) > 0 {
					got[0].Function = "clobbered" // callers own the slice
				}
			}
		}(g)
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
