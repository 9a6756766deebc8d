package attach

import (
	"debug/elf"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"blockprof/internal/procmaps"
	"blockprof/internal/testutil"
	"blockprof/internal/unwind"
)

// The hand-written Go layouts match the C ones bpf2go generated.
func TestUnwindLayout(t *testing.T) {
	for _, p := range []struct{ ours, gen any }{
		{unwRow{}, unwtestUnwRow{}},
		{unwMapping{}, unwtestUnwMapping{}},
		{unwMappingKey{}, unwtestUnwMappingKey{}},
	} {
		a, b := reflect.TypeOf(p.ours), reflect.TypeOf(p.gen)
		if a.Size() != b.Size() {
			t.Errorf("%v is %d bytes, C has %d", a, a.Size(), b.Size())
		}
		var offs []uintptr
		for i := 0; i < b.NumField(); i++ {
			if b.Field(i).Name != "_" {
				offs = append(offs, b.Field(i).Offset)
			}
		}
		for i := 0; i < a.NumField(); i++ {
			if i >= len(offs) || a.Field(i).Offset != offs[i] {
				t.Errorf("%v field %s at %d, C layout %v", a, a.Field(i).Name, a.Field(i).Offset, offs)
			}
		}
	}
	if unsafe.Sizeof(unwRow{}) != 8 {
		t.Errorf("row is %d bytes", unsafe.Sizeof(unwRow{}))
	}
}

func TestEncodeRows(t *testing.T) {
	rows := []unwind.Row{
		{PC: 0x10, CFA: unwind.CFARSP, CFAOff: 8},
		{PC: 0x11, CFA: unwind.CFARSP, CFAOff: 16, RBP: unwind.RBPOffset, RBPOff: -16},
		{PC: 0x14, CFA: unwind.CFARBP, CFAOff: 16, RBP: unwind.RBPOffset, RBPOff: -16},
		{PC: 0x20, CFA: unwind.CFARSP, CFAOff: 12},                                      // not a slot multiple
		{PC: 0x24, CFA: unwind.CFARSP, CFAOff: 8 << 16},                                 // too large
		{PC: 0x28, CFA: unwind.CFARSP, CFAOff: 8, RBP: unwind.RBPOffset, RBPOff: -2048}, // rbp too far
		{PC: 0x30, CFA: unwind.CFAPLT, CFAOff: 8},
		{PC: 0x40, CFA: unwind.CFAEnd},
		{PC: 0x50},
	}
	got, unsupported, ok := encodeRows(rows)
	want := []unwRow{
		{0x10, 1, 0, 1},
		{0x11, 2, -2, 1 | 1<<4},
		{0x14, 2, -2, 2 | 1<<4},
		{0x20, 0, 0, 5}, // 0x24 merges into it
		{0x28, 1, 0, 1 | 2<<4},
		{0x30, 1, 0, 3},
		{0x40, 0, 0, 4},
		{0x50, 0, 0, 0},
	}
	if !ok || unsupported != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("encodeRows: ok %v, %d unsupported\n%v\nwant\n%v", ok, unsupported, got, want)
	}
	if _, _, ok := encodeRows([]unwind.Row{{PC: 1 << 32}}); ok {
		t.Error("a pc above 4 GiB was accepted")
	}
}

// symbolizer names user PCs of a live process from its ELF symbols.
type symbolizer struct {
	pid  int
	maps []procmaps.Mapping
	syms map[string][]elf.Symbol
}

func (s *symbolizer) name(pc uint64) string {
	for _, m := range s.maps {
		if pc < m.Start || pc >= m.End {
			continue
		}
		ef, err := openMapped(s.pid, m)
		if err != nil {
			return "?"
		}
		defer ef.Close()
		bias, _ := loadBias(ef, m)
		syms, ok := s.syms[m.Path]
		if !ok {
			a, _ := ef.Symbols()
			b, _ := ef.DynamicSymbols()
			syms = append(a, b...)
			s.syms[m.Path] = syms
		}
		v := pc - bias
		for _, sym := range syms {
			if elf.ST_TYPE(sym.Info) == elf.STT_FUNC && v >= sym.Value && v < sym.Value+sym.Size {
				return sym.Name
			}
		}
		return fmt.Sprintf("%s+%#x", m.Path[strings.LastIndex(m.Path, "/")+1:], v)
	}
	return fmt.Sprintf("%#x", pc)
}

// walk waits for the next unwind of the blocked workload and names it.
func walk(t *testing.T, objs *unwtestObjects, s *symbolizer) (unwtestUnwStack, []string) {
	t.Helper()
	var before, nsBefore uint64
	if err := objs.UnwWalks.Get(&before); err != nil {
		t.Fatal(err)
	}
	if err := objs.UnwWalkNs.Get(&nsBefore); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n uint64
		if err := objs.UnwWalks.Get(&n); err != nil {
			t.Fatal(err)
		}
		if n >= before+50 { // enough walks for an average cost, all after any in flight
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no unwind within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var st unwtestUnwStack
	if err := objs.UnwLast.Lookup(uint32(0), &st); err != nil {
		t.Fatal(err)
	}
	var walks, ns uint64
	if objs.UnwWalks.Get(&walks) == nil && objs.UnwWalkNs.Get(&ns) == nil && walks > before {
		t.Logf("%d walks, %.2f µs each on average", walks-before, float64(ns-nsBefore)/float64(walks-before)/1e3)
	}
	var names []string
	for i := uint32(0); i < st.N && i < uint32(len(st.Pcs)); i++ {
		pc := st.Pcs[i]
		if i > 0 {
			pc-- // the call, not the instruction after it
		}
		names = append(names, s.name(pc))
	}
	return st, names
}

// loadUnwinder loads the unwinder's test hook for process pid.
func loadUnwinder(t *testing.T, pid int) *unwtestObjects {
	t.Helper()
	spec, err := loadUnwtest()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables[unwtestVarCfgUnwTgid].Set(uint32(pid)); err != nil {
		t.Fatal(err)
	}
	spec.Maps[unwtestMapUnwRows].MaxEntries = 1 << 18
	var objs unwtestObjects
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			t.Fatalf("load: %+v", verr)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	t.Logf("verifier: %s", strings.TrimSpace(objs.BprofUnwtest.VerifierLog))
	l, err := link.AttachTracing(link.TracingOptions{Program: objs.BprofUnwtest})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &objs
}

// unwindBoth walks pid's stack with frame pointers only, then with tables.
// With wantFP false, no frame may need frame pointers.
func unwindBoth(t *testing.T, pid int, wantFP bool) (st unwtestUnwStack, names []string, fpNames []string) {
	t.Helper()
	objs := loadUnwinder(t, pid)
	maps, err := readExecMappings(pid)
	if err != nil {
		t.Fatal(err)
	}
	s := &symbolizer{pid: pid, maps: maps, syms: map[string][]elf.Symbol{}}
	fpSt, fpNames := walk(t, objs, s)
	t.Logf("frame pointers only: status %d, %d frames: %v", fpSt.Status, fpSt.N, fpNames)
	tabs := NewUnwindTables(objs.UnwRows, objs.UnwProcs, objs.UnwMappings)
	if err := tabs.AddProcess(pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tabs.RemoveProcess(pid) })
	t.Logf("tables: %+v", tabs.Stats())
	st, names = walk(t, objs, s)
	t.Logf("with tables: status %d, %d frames (%d by table, %d by frame pointer): %v",
		st.Status, st.N, st.TableFrames, st.FpFrames, names)
	if st.Status != 0 /* UNW_DONE_END */ || len(names) == 0 || names[len(names)-1] != "_start" {
		t.Errorf("walk did not end at _start with UNW_DONE_END: status %d, %v", st.Status, names)
	}
	if st.FpFrames != 0 && !wantFP {
		t.Errorf("%d frames fell back to frame pointers; every file here has CFI", st.FpFrames)
	}
	return st, names, fpNames
}

// contains reports whether want appears in names, in order, adjacent.
func contains(names, want []string) bool {
	return strings.Contains(" "+strings.Join(names, " ")+" ", " "+strings.Join(want, " ")+" ")
}

// TestUnwinderKernel runs bpf/include/unwind.h on a process blocked in
// usleep whose own code has no frame pointers.
func TestUnwinderKernel(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "testdata/deepstack.c", "-O2", "-fomit-frame-pointer")
	w := testutil.Start(t, bin)
	w.Ready(t)
	_, names, _ := unwindBoth(t, w.PID(), false)
	if want := []string{"level3", "level2", "level1", "main"}; !contains(names, want) {
		t.Errorf("stack %v lacks %v in order", names, want)
	}
}

// TestUnwinderKernelFallback: the fixture's own code has frame pointers
// but no CFI (-g0 drops .debug_frame too), between libc frames that have
// CFI and none: table, then frame pointers, then table again.
func TestUnwinderKernelFallback(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "testdata/deepstack.c", "-O2", "-fno-omit-frame-pointer",
		"-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g0")
	w := testutil.Start(t, bin)
	w.Ready(t)
	st, names, _ := unwindBoth(t, w.PID(), true)
	if want := []string{"usleep", "level3", "level2", "level1", "main"}; !contains(names, want) {
		t.Errorf("stack %v lacks %v in order", names, want)
	}
	if st.FpFrames < 4 {
		t.Errorf("%d frames by frame pointer, want at least level3..main", st.FpFrames)
	}
}

// TestUnwinderKernelPython: Debian's python3.11 (no frame pointers)
// blocked in time.sleep, through the interpreter loop down to _start. (Its
// main tail-calls Py_BytesMain, so main itself is not on the stack.)
func TestUnwinderKernelPython(t *testing.T) {
	testutil.RequireRoot(t)
	py := testutil.Pythons()[0]
	testutil.RequirePython(t, py)
	w := testutil.Start(t, py.Path, "-c", "import time\nprint('ready', flush=True)\nwhile True: time.sleep(0.002)")
	w.Ready(t)
	_, names, _ := unwindBoth(t, w.PID(), false)
	if want := []string{"Py_RunMain", "Py_BytesMain"}; !contains(names, want) {
		t.Errorf("stack %v lacks %v", names, want)
	}
	if !contains(names, []string{"_PyEval_EvalFrameDefault"}) {
		t.Errorf("stack %v lacks the interpreter loop", names)
	}
}

// A frame-pointer walk made before tables loaded needed a table only where
// it passed through a mapping that has one.
func TestNeededTable(t *testing.T) {
	u := &UnwindTables{lists: map[int][]unwMapping{
		7: {{Start: 0x1000, End: 0x2000}, {Start: 0x5000, End: 0x6000, RowCount: 10}},
	}}
	for _, tc := range []struct {
		pid           uint32
		pcs           []uint64
		needed, known bool
	}{
		{7, []uint64{0x1100, 0x1200}, false, true}, // Go code only
		{7, []uint64{0x1100, 0x5100}, true, true},  // through a table's mapping
		{7, []uint64{0x5000, 0x1100}, true, true},  // leaf at a table mapping's first byte
		{7, []uint64{0x1100, 0x5000}, false, true}, // return address just past it: the call is before
		{7, []uint64{0x1100, 0x9000}, false, true}, // anonymous code: frame pointers either way
		{8, []uint64{0x1100}, false, false},        // tables never loaded
	} {
		needed, known := u.NeededTable(tc.pid, tc.pcs)
		if needed != tc.needed || known != tc.known {
			t.Errorf("NeededTable(%d, %#x) = %v, %v; want %v, %v", tc.pid, tc.pcs, needed, known, tc.needed, tc.known)
		}
	}
}
