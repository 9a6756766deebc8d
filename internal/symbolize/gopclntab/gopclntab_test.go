package gopclntab

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

type fixtureConfig struct {
	name     string
	args     []string
	cgo      bool
	inlined  bool
	pie      bool
	stripped bool
	twin     string // unstripped build with the same layout
}

var fixtureConfigs = []fixtureConfig{
	{name: "default", inlined: true},
	{name: "stripped", args: []string{"-ldflags=-s -w"}, inlined: true, stripped: true, twin: "default"},
	{name: "pie", args: []string{"-buildmode=pie"}, inlined: true, pie: true},
	{name: "pie-stripped", args: []string{"-buildmode=pie", "-ldflags=-s -w"}, inlined: true, pie: true, stripped: true, twin: "pie"},
	{name: "noinline", args: []string{"-gcflags=-l"}},
	{name: "external", args: []string{"-ldflags=-linkmode=external"}, cgo: true, inlined: true},
	{name: "external-pie-stripped", args: []string{"-buildmode=pie", "-ldflags=-linkmode=external -s -w"}, cgo: true, inlined: true, pie: true, stripped: true},
}

func TestFixtures(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("fixtures are ELF binaries run on this machine")
	}
	dir := t.TempDir()
	writeFixture(t, dir)
	_, gccErr := exec.LookPath("gcc")
	bins := map[string]string{}
	for _, c := range fixtureConfigs {
		if c.cgo && gccErr != nil {
			continue
		}
		bins[c.name] = buildFixture(t, dir, c.name, c.cgo, c.args...)
	}
	for _, c := range fixtureConfigs {
		bin, ok := bins[c.name]
		if !ok {
			t.Run(c.name, func(t *testing.T) { t.Skip("no C toolchain for external linking") })
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			tb, f := openTable(t, bin)
			if got := tb.Version(); got != "1.20" {
				t.Errorf("Version = %q, want 1.20", got)
			}
			t.Run("runtime", func(t *testing.T) { checkAgainstRuntime(t, c, tb, bin) })
			if !c.stripped {
				t.Run("gosym", func(t *testing.T) { checkAgainstGosym(t, tb, f) })
				t.Run("symbols", func(t *testing.T) { checkAgainstSymbols(t, tb, f) })
			}
			if c.twin != "" {
				t.Run("same-as-unstripped", func(t *testing.T) {
					twin, _ := openTable(t, bins[c.twin])
					compareTables(t, twin, tb)
				})
			}
		})
	}
	t.Run("hidden-sections", func(t *testing.T) { checkHiddenSections(t, bins["default"], false) })
	t.Run("hidden-sections-pie", func(t *testing.T) { checkHiddenSections(t, bins["pie"], true) })
	t.Run("no-section-headers", func(t *testing.T) { checkNoSectionHeaders(t, bins["default"]) })
	t.Run("corrupted", func(t *testing.T) { checkCorrupted(t, bins["default"]) })
}

// checkAgainstRuntime compares Lookup with what runtime.CallersFrames
// said inside the running fixture.
func checkAgainstRuntime(t *testing.T, c fixtureConfig, tb *Table, bin string) {
	r := runFixture(t, bin)
	static, ok := funcEntry(tb, "main.outer")
	if !ok {
		t.Fatal("main.outer not in table")
	}
	bias := r.outerEntry - static
	if !c.pie && bias != 0 || bias%0x1000 != 0 {
		t.Fatalf("load bias %#x (runtime entry %#x, file entry %#x)", bias, r.outerEntry, static)
	}
	// Each Callers pc stands for one logical frame: the innermost frame
	// Lookup reports for it must be that frame.
	for i, pc := range r.pcs {
		want := r.frames[i]
		if want.Function == "runtime.goexit" {
			continue // its pc is synthetic
		}
		got := tb.Lookup(pc - 1 - bias)
		if len(got) == 0 {
			t.Errorf("Lookup(%#x) = nil, want %v", pc-1-bias, want)
			continue
		}
		if frameKey(got[0]) != want {
			t.Errorf("Lookup(%#x)[0] = %+v, want %+v", pc-1-bias, got[0], want)
		}
	}
	// The first pc is inside the inlined leaf: it expands to the whole
	// inline stack, innermost first.
	got := tb.Lookup(r.pcs[0] - 1 - bias)
	starts := map[string]int{
		"main.leaf":  srcLine(t, "func leaf("),
		"main.mid":   srcLine(t, "func mid("),
		"main.outer": srcLine(t, "func outer("),
	}
	n := 1
	if c.inlined {
		n = 3
	}
	if len(got) != n {
		t.Fatalf("Lookup(first pc) = %+v, want %d frames", got, n)
	}
	for i, g := range got {
		if frameKey(g) != r.frames[i] {
			t.Errorf("frame %d = %+v, want %+v", i, g, r.frames[i])
		}
		if g.StartLine != starts[g.Function] {
			t.Errorf("frame %d %s StartLine = %d, want %d", i, g.Function, g.StartLine, starts[g.Function])
		}
	}
	if !c.inlined && (got[0].Function != "main.leaf" || r.frames[1].Function != "main.mid") {
		t.Errorf("noinline build: got %+v, runtime %+v", got, r.frames)
	}
}

// samplePCs picks pcs spread over every function of tb.
func samplePCs(tb *Table, perFunc int) []uint64 {
	var pcs []uint64
	for i := 0; i < tb.h.nfunc; i++ {
		lo, hi := tb.entry(i), tb.entry(i+1)
		if hi <= lo {
			continue
		}
		step := (hi - lo) / uint64(perFunc)
		if step == 0 {
			step = 1
		}
		for pc := lo; pc < hi; pc += step {
			pcs = append(pcs, pc)
		}
		pcs = append(pcs, hi-1)
	}
	return pcs
}

// checkAgainstGosym compares the innermost file:line and the physical
// function name with debug/gosym, which does not know about inlining.
func checkAgainstGosym(t *testing.T, tb *Table, f *elf.File) {
	s := f.Section(".gopclntab")
	if s == nil {
		t.Skip("no .gopclntab section")
	}
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	text := symbolAddr(t, f, "runtime.text")
	st, err := gosym.NewTable(nil, gosym.NewLineTable(data, text))
	if err != nil {
		t.Fatal(err)
	}
	pcs := samplePCs(tb, 8)
	bad := 0
	for _, pc := range pcs {
		file, line, fn := st.PCToLine(pc)
		got := tb.Lookup(pc)
		if fn == nil {
			if got != nil {
				t.Errorf("Lookup(%#x) = %+v, gosym has no function", pc, got)
				bad++
			}
			continue
		}
		if len(got) == 0 {
			t.Errorf("Lookup(%#x) = nil, gosym says %s %s:%d", pc, fn.Name, file, line)
			bad++
			continue
		}
		// gosym reports a missing entry (e.g. padding after the code) as
		// "":-1, Lookup as "?":0.
		gf := got[0].File
		if gf == "?" {
			gf = ""
		}
		if line < 0 {
			line = 0
		}
		if gf != file && noLineTable(tb, pc) && gf == "" && got[0].Line == 0 {
			// Markers such as go:textfipsstart have no tables; gosym
			// decodes offset 0 as one anyway, the runtime says "?".
			continue
		}
		if gf != file || got[0].Line != line || got[len(got)-1].Function != fn.Name {
			t.Errorf("Lookup(%#x) = %+v, gosym says %s %s:%d", pc, got, fn.Name, file, line)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many mismatches")
		}
	}
	t.Logf("%d pcs agree with debug/gosym", len(pcs))
}

// noLineTable reports whether pc's function has no pcfile/pcln table.
func noLineTable(tb *Table, pc uint64) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	rf, ok := tb.readFunc(tb.findFunc(pc))
	return ok && (rf.pcfile == 0 || rf.pcln == 0)
}

// checkAgainstSymbols checks function entries against the ELF symbol
// table.
func checkAgainstSymbols(t *testing.T, tb *Table, f *elf.File) {
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || !strings.Contains(s.Name, ".") {
			continue
		}
		got := tb.Lookup(s.Value)
		if len(got) == 0 {
			if strings.HasPrefix(s.Name, "runtime.") || strings.HasPrefix(s.Name, "main.") {
				t.Errorf("Lookup(%s @ %#x) = nil", s.Name, s.Value)
			}
			continue
		}
		// Assembly functions carry an ABI suffix only in the symbol table.
		// The symbol table also spells the middle dot as a plain dot.
		want := strings.TrimSuffix(s.Name, ".abi0")
		if strings.ReplaceAll(got[len(got)-1].Function, "·", ".") != want {
			t.Errorf("Lookup(%#x) = %q, symbol table says %q", s.Value, got[len(got)-1].Function, s.Name)
		}
		n++
	}
	if n < 100 {
		t.Errorf("only %d symbols checked", n)
	}
}

func symbolAddr(t *testing.T, f *elf.File, name string) uint64 {
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("no symbol %s", name)
	return 0
}

// compareTables checks that b answers like a over all of a's functions.
func compareTables(t *testing.T, a, b *Table) {
	t.Helper()
	if a.h.nfunc != b.h.nfunc {
		t.Fatalf("nfunc %d vs %d", a.h.nfunc, b.h.nfunc)
	}
	bad := 0
	inl := 0
	for _, pc := range samplePCs(a, 8) {
		x, y := a.Lookup(pc), b.Lookup(pc)
		if len(x) > 1 {
			inl++
		}
		if !reflect.DeepEqual(x, y) {
			t.Errorf("Lookup(%#x): %+v vs %+v", pc, x, y)
			if bad++; bad > 10 {
				t.Fatal("too many mismatches")
			}
		}
	}
	if inl == 0 {
		t.Error("no inlined frames seen")
	}
}

// patchSectionNames renames sections so Open cannot find them by name.
func patchSectionNames(t *testing.T, data []byte, f *elf.File) {
	shstr := f.Sections[binary.LittleEndian.Uint16(data[0x3e:])]
	for _, s := range f.Sections {
		switch s.Name {
		case ".gopclntab", ".go.module", ".data.rel.ro.gopclntab":
			off := shstr.Offset + uint64(sectionNameOff(t, data, f, s))
			data[off+1] = 'x' // ".gopclntab" -> ".xopclntab"
		}
	}
}

// sectionNameOff reads a section header's sh_name.
func sectionNameOff(t *testing.T, data []byte, f *elf.File, s *elf.Section) uint32 {
	shoff := binary.LittleEndian.Uint64(data[0x28:])
	shentsize := uint64(binary.LittleEndian.Uint16(data[0x3a:]))
	for i, x := range f.Sections {
		if x == s {
			return binary.LittleEndian.Uint32(data[shoff+uint64(i)*shentsize:])
		}
	}
	t.Fatal("section not found")
	return 0
}

// checkHiddenSections renames .gopclntab and .go.module, forcing the
// header search and the moduledata scan. For PIE it also zeroes the
// moduledata words the dynamic loader would fill in, forcing the
// relocation path.
func checkHiddenSections(t *testing.T, bin string, pie bool) {
	if bin == "" {
		t.Skip("fixture missing")
	}
	orig, f := openTable(t, bin)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if pie {
		md := f.Section(".go.module")
		relocs := orig.m.relativeRelocs()
		zeroed := 0
		for a := md.Addr; a < md.Addr+md.Size; a += 8 {
			if _, ok := relocs[a]; ok {
				off := md.Offset + (a - md.Addr)
				copy(data[off:off+8], make([]byte, 8))
				zeroed++
			}
		}
		if zeroed < 10 {
			t.Fatalf("only %d relocated moduledata words", zeroed)
		}
	}
	patchSectionNames(t, data, f)
	path := filepath.Join(t.TempDir(), "patched")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	pf, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	if pf.Section(".gopclntab") != nil || pf.Section(".go.module") != nil {
		t.Fatal("sections still visible")
	}
	tb, err := Open(pf)
	if err != nil {
		t.Fatal(err)
	}
	if tb.addr != orig.addr || tb.textStart != orig.textStart || tb.gofunc != orig.gofunc {
		t.Errorf("bases: addr %#x text %#x gofunc %#x, want %#x %#x %#x",
			tb.addr, tb.textStart, tb.gofunc, orig.addr, orig.textStart, orig.gofunc)
	}
	compareTables(t, orig, tb)
}

// checkNoSectionHeaders drops the section header table, leaving only
// program headers, as sstrip-like tools do.
func checkNoSectionHeaders(t *testing.T, bin string) {
	if bin == "" {
		t.Skip("fixture missing")
	}
	orig, _ := openTable(t, bin)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(data[0x28:], 0) // e_shoff
	binary.LittleEndian.PutUint16(data[0x3c:], 0) // e_shnum
	binary.LittleEndian.PutUint16(data[0x3e:], 0) // e_shstrndx
	path := filepath.Join(t.TempDir(), "noshdr")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	tb, f := openTable(t, path)
	if len(f.Sections) != 0 {
		t.Fatalf("%d sections left", len(f.Sections))
	}
	compareTables(t, orig, tb)
}

// TestToolchainBinaries smoke-tests real, large binaries: the go command
// and gofmt shipped with this toolchain.
func TestToolchainBinaries(t *testing.T) {
	for _, name := range []string{"gofmt", "go"} {
		path := filepath.Join(runtime.GOROOT(), "bin", name)
		if _, err := os.Stat(path); err != nil {
			t.Logf("skip %s: %v", name, err)
			continue
		}
		t.Run(name, func(t *testing.T) {
			tb, f := openTable(t, path)
			t.Logf("%s: pclntab %s, %d funcs, text %#x, go:func.* %#x", name, tb.Version(), tb.h.nfunc, tb.textStart, tb.gofunc)
			if tb.gofunc == 0 {
				t.Error("go:func.* not found")
			}
			if _, ok := funcEntry(tb, "main.main"); !ok {
				t.Error("main.main not found")
			}
			unknown, inlined, total := 0, 0, 0
			for _, pc := range samplePCs(tb, 4) {
				fr := tb.Lookup(pc)
				if len(fr) == 0 {
					t.Fatalf("Lookup(%#x) = nil inside a function", pc)
				}
				if len(fr) > 1 {
					inlined++
				}
			}
			// Entries always have a position; other sampled pcs may be
			// alignment padding past the last instruction.
			for i := 0; i < tb.h.nfunc; i++ {
				fr := tb.Lookup(tb.entry(i))
				total++
				if len(fr) == 0 || fr[0].File == "?" || fr[0].Line == 0 {
					unknown++
				}
			}
			t.Logf("%d entries, %d without file:line; %d sampled pcs with inlined frames", total, unknown, inlined)
			if unknown*20 > total {
				t.Errorf("%d of %d pcs have no file:line", unknown, total)
			}
			if inlined == 0 {
				t.Error("no inlined frames in a real binary")
			}
			if s := f.Section(".symtab"); s != nil {
				t.Run("gosym", func(t *testing.T) { checkAgainstGosym(t, tb, f) })
			}
		})
	}
}
