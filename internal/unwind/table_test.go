package unwind

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"blockprof/internal/testutil"
)

const (
	libcPath   = "/lib/x86_64-linux-gnu/libc.so.6"
	pythonPath = "/usr/bin/python3.11"
	fixtureSrc = "testdata/frames.c"
)

// fixture compiles testdata/frames.c with extra flags.
func fixture(t *testing.T, cflags ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	return testutil.BuildC(t, fixtureSrc, append([]string{"-O2"}, cflags...)...)
}

func buildPath(t testing.TB, path string) *Table {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Skipf("%s: %v", path, err)
	}
	defer f.Close()
	tab, err := Build(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	checkSorted(t, tab)
	return tab
}

// checkSorted checks the table invariants: strictly increasing PCs and
// no two adjacent rows with the same rule.
func checkSorted(t testing.TB, tab *Table) {
	t.Helper()
	for i := 1; i < len(tab.Rows); i++ {
		a, b := tab.Rows[i-1], tab.Rows[i]
		if a.PC >= b.PC {
			t.Fatalf("rows %d,%d out of order: %v, %v", i-1, i, a, b)
		}
		if a.sameRule(b) {
			t.Fatalf("rows %d,%d not merged: %v, %v", i-1, i, a, b)
		}
	}
}

// symbols maps the fixture's function names to [start, end).
func symbols(t *testing.T, path string) map[string][2]uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			out[s.Name] = [2]uint64{s.Value, s.Value + s.Size}
		}
	}
	return out
}

// rowsIn returns the rows that start inside fn.
func rowsIn(tab *Table, r [2]uint64) []Row {
	var out []Row
	for _, row := range tab.Rows {
		if row.PC >= r[0] && row.PC < r[1] {
			out = append(out, row)
		}
	}
	return out
}

func TestFixtureAgainstReadelf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   []string
		section string
	}{
		{"omit-fp", []string{"-fomit-frame-pointer"}, ".eh_frame"},
		{"fp", []string{"-fno-omit-frame-pointer"}, ".eh_frame"},
		// Without unwind tables gcc writes the CFI to .debug_frame; the
		// C runtime's own objects still bring a small .eh_frame.
		{"debug-frame", []string{"-fomit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"}, ".debug_frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := fixture(t, tc.flags...)
			tab := buildPath(t, bin)
			t.Logf("%s: %s; stats %+v", tc.name, crossCheck(t, bin, tab, tc.section), tab.Stats)
			if tc.section == ".debug_frame" {
				t.Logf("eh_frame: %s", crossCheck(t, bin, tab, ".eh_frame"))
			}
			if tab.Stats.BadRecords != 0 {
				t.Errorf("bad records: %d", tab.Stats.BadRecords)
			}
			syms := symbols(t, bin)
			for _, fn := range []string{"leaf", "saves", "vla", "realign", "big", "early", "variadic", "recurse", "main"} {
				if _, ok := syms[fn]; !ok {
					t.Fatalf("no symbol %s", fn)
				}
				if got := tab.Lookup(syms[fn][0]); got.CFA != CFARSP || got.CFAOff != 8 || got.RBP != RBPSame {
					t.Errorf("%s entry: %v, want rsp+8, rbp unchanged", fn, got)
				}
			}
			// Rules the fixture was written to produce.
			has := func(fn string, pred func(Row) bool) bool {
				for _, r := range rowsIn(tab, syms[fn]) {
					if pred(r) {
						return true
					}
				}
				return false
			}
			if !has("vla", func(r Row) bool { return r.CFA == CFARBP && r.CFAOff == 16 && r.RBP == RBPOffset && r.RBPOff == -16 }) {
				t.Errorf("vla: no rbp+16 row with rbp at CFA-16: %v", rowsIn(tab, syms["vla"]))
			}
			if tc.name != "fp" && !has("big", func(r Row) bool { return r.CFA == CFARSP && r.CFAOff > 100000 }) {
				t.Errorf("big: no large rsp offset: %v", rowsIn(tab, syms["big"]))
			}
			if !has("odd", func(r Row) bool { return r.CFA == CFAUnsupported }) ||
				!has("odd", func(r Row) bool { return r.RBP == RBPUnsupported }) ||
				tab.Stats.UnsupportedFDEs != 1 {
				t.Errorf("odd: want unsupported CFA and rbp rows in one FDE: %v, %+v", rowsIn(tab, syms["odd"]), tab.Stats)
			}
			// remember_state at odd+7 saved the r10 rule; restore_state at
			// odd+8 brings it back after one rsp-based instruction.
			odd := syms["odd"][0]
			if a, b := tab.Lookup(odd+7), tab.Lookup(odd+8); a.CFA != CFARSP || b.CFA != CFAUnsupported || b.RBP != RBPUnsupported {
				t.Errorf("remember/restore_state: odd+7 %v, odd+8 %v", a, b)
			}
			if tc.name == "fp" && !has("saves", func(r Row) bool { return r.CFA == CFARBP && r.RBP == RBPOffset }) {
				t.Errorf("saves with frame pointers: no rbp-based row: %v", rowsIn(tab, syms["saves"]))
			}
		})
	}
}

// TestLibcAgainstReadelf compares all of libc, PLT included.
// TestSystemFilesAgainstReadelf compares all of libc (PLT included) and python3.11.
func TestSystemFilesAgainstReadelf(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: readelf over libc and python")
	}
	for _, p := range []string{libcPath, pythonPath} {
		tab := buildPath(t, p)
		t.Logf("%s: %s", filepath.Base(p), crossCheck(t, p, tab, ".eh_frame"))
		t.Logf("%s: %d rows, %d unsupported rows, %d of %d FDEs with unsupported rows, %d bad records",
			filepath.Base(p), tab.Stats.Rows, tab.Stats.UnsupportedRows, tab.Stats.UnsupportedFDEs, tab.Stats.FDEs, tab.Stats.BadRecords)
	}
}

// TestPLTLayout checks the assumption behind CFAPLT on this machine's
// libc: .plt entries are 16 bytes, the push of the relocation index
// starts at offset 6 and is 5 bytes long, so rsp moves at offset 11.
func TestPLTLayout(t *testing.T) {
	f, err := elf.Open(libcPath)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	s := f.Section(".plt")
	if s == nil {
		t.Skip("libc has no .plt")
	}
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Build(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 16; off+16 <= len(data); off += 16 {
		e := data[off : off+16]
		if e[0] != 0xff || e[1] != 0x25 || e[6] != 0x68 || e[11] != 0xe9 {
			t.Fatalf(".plt+%#x: % x: not jmp *GOT; push imm32; jmp PLT0", off, e)
		}
		pc := s.Addr + uint64(off)
		for _, o := range []uint64{0, 6, 10, 11, 15} {
			got := tab.Lookup(pc + o)
			if got.CFA != CFAPLT || got.CFAOff != 8 {
				t.Fatalf(".plt+%#x: %v, want plt+8", off+int(o), got)
			}
			if cfa := pltCFA(0, pc+o, got.CFAOff); cfa != map[bool]uint64{true: 16, false: 8}[o >= 11] {
				t.Fatalf(".plt+%#x: CFA rsp+%d", off+int(o), cfa)
			}
		}
		n++
	}
	t.Logf("%d PLT entries checked", n)
}

// pltCFA evaluates the CFAPLT rule as an unwinder would.
func pltCFA(rsp, rip uint64, off int32) uint64 {
	cfa := rsp + uint64(off)
	if rip&15 >= 11 {
		cfa += 8
	}
	return cfa
}

// TestRealFiles builds tables for large real files; none may fail.
func TestRealFiles(t *testing.T) {
	goBin := goTestBinary(t)
	for _, p := range []string{libcPath, pythonPath, goBin} {
		tab := buildPath(t, p)
		s := tab.Stats
		t.Logf("%s: eh_frame %d B, debug_frame %d B: %d FDEs, %d rows (%d B), %d unsupported rows in %d FDEs, %d bad records, %d skipped",
			filepath.Base(p), s.EhFrameBytes, s.DebugFrameBytes, s.FDEs, s.Rows, tab.Bytes(), s.UnsupportedRows, s.UnsupportedFDEs, s.BadRecords, s.SkippedFDEs)
		if s.Rows == 0 {
			t.Errorf("%s: empty table", p)
		}
	}
}

var goTestBin atomic.Value

// goTestBinary is this package's test binary with DWARF: the running
// one is linked without it by `go test`, so it is rebuilt with -c.
func goTestBinary(t testing.TB) string {
	t.Helper()
	if p, ok := goTestBin.Load().(string); ok {
		return p
	}
	self, err := os.Executable()
	if err == nil {
		if f, err := elf.Open(self); err == nil {
			ok := f.Section(".debug_frame") != nil || f.Section(".eh_frame") != nil
			f.Close()
			if ok {
				goTestBin.Store(self)
				return self
			}
		}
	}
	out := filepath.Join(t.TempDir(), "unwind.test")
	cmd := exec.Command("go", "test", "-c", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("go test -c: %v\n%s", err, b)
	}
	return out
}

func TestGoBinaryAgainstReadelf(t *testing.T) {
	bin := goTestBinary(t)
	tab := buildPath(t, bin)
	t.Logf("go test binary: %s", crossCheck(t, bin, tab, ".debug_frame"))
}

func TestCache(t *testing.T) {
	c := NewCache(2)
	opens := 0
	open := func() (*elf.File, error) { opens++; return elf.Open(libcPath) }
	a, err := c.Get("libc", open)
	if err != nil {
		t.Skip(err)
	}
	b, _ := c.Get("libc", open)
	if a != b || opens != 1 {
		t.Errorf("second Get reparsed: opens=%d", opens)
	}
	if _, err := c.GetPath("missing", "/nonexistent"); err == nil {
		t.Error("missing file: no error")
	}
	c.Get("x", func() (*elf.File, error) { return nil, os.ErrNotExist })
	if c.Len() != 2 {
		t.Errorf("cache holds %d, want 2 (bounded)", c.Len())
	}
	if _, err := c.Get("x", open); err == nil || !strings.Contains(err.Error(), "not exist") {
		t.Errorf("cached error not returned: %v", err)
	}
}

// TestDamagedEhFrame: with .eh_frame overwritten, the table comes from
// .debug_frame alone, and the damage is counted.
func TestDamagedEhFrame(t *testing.T) {
	bin := fixture(t, "-fomit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(".eh_frame")
	f.Close()
	if s == nil {
		t.Skip("no .eh_frame")
	}
	for i := s.Offset; i < s.Offset+s.Size; i++ {
		data[i] = 0xff // a 64-bit length far past the end
	}
	damaged := filepath.Join(t.TempDir(), "damaged")
	if err := os.WriteFile(damaged, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tab := buildPath(t, damaged)
	syms := symbols(t, damaged)
	if tab.Stats.BadRecords == 0 || tab.Lookup(syms["saves"][0]+1).CFA != CFARSP {
		t.Errorf("stats %+v; saves+1: %v", tab.Stats, tab.Lookup(syms["saves"][0]+1))
	}
	t.Logf("%s", crossCheck(t, bin, tab, ".debug_frame"))
}
