package symbolize

import (
	"bufio"
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lookupFile resolves link-time addresses of a file, without a process.
func lookupFile(t testing.TB, s *Symbolizer, path string, pcs ...uint64) [][]Frame {
	t.Helper()
	o, err := s.openPath(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]Frame, len(pcs))
	for i, pc := range pcs {
		out[i] = o.lookup(pc)
	}
	return out
}

func TestCXX(t *testing.T) {
	b := buildC(t)
	symOnly := filepath.Join(t.TempDir(), "cxx-nodebug")
	run(t, "", "strip", "--strip-debug", "-o", symOnly, b.cxx)
	for _, bin := range []string{b.cxx, symOnly} {
		s := New(Options{DebugDirs: []string{}})
		method := nmAddr(t, bin, "_ZN2ns5Klass6methodEi")
		get := nmAddr(t, bin, "_ZNK2ns3BoxIlE3getEv")
		fr := lookupFile(t, s, bin, method, get+1)
		for i, want := range []struct{ fn, sys string }{
			{"ns::Klass::method", "_ZN2ns5Klass6methodEi"},
			{"ns::Box::get", "_ZNK2ns3BoxIlE3getEv"},
		} {
			if len(fr[i]) != 1 || fr[i][0].Function != want.fn || fr[i][0].SystemName != want.sys {
				t.Errorf("%s: %+v, want %s (%s)", filepath.Base(bin), fr[i], want.fn, want.sys)
			}
		}
		if bin == b.cxx && (len(fr[0]) != 1 || filepath.Base(fr[0][0].File) != "fixture.cc" || fr[0][0].Line == 0) {
			t.Errorf("no DWARF line for method: %+v", fr[0])
		}
		s.Close()
	}
}

// TestAgainstAddr2line compares every instruction byte of the fixture's
// own functions with binutils' addr2line, inlined frames included.
func TestAgainstAddr2line(t *testing.T) {
	b := buildC(t)
	needTools(t, "addr2line")
	for _, bin := range []string{b.inline, b.pie, b.lib} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			syms, _ := f.Symbols()
			f.Close()
			var pcs []uint64
			for _, sym := range syms {
				switch sym.Name {
				case "outer", "leaf_func", "main", "record", "lib_hidden", "lib_ret", "lib_self":
					for pc := sym.Value; pc < sym.Value+sym.Size; pc++ {
						pcs = append(pcs, pc)
					}
				}
			}
			if len(pcs) == 0 {
				t.Fatal("no fixture functions found")
			}
			want := addr2line(t, bin, pcs)
			s := New(Options{DebugDirs: []string{}})
			defer s.Close()
			got := lookupFile(t, s, bin, pcs...)
			bad := 0
			for i, pc := range pcs {
				g := frameString(got[i])
				if g != want[i] {
					if bad++; bad <= 10 {
						t.Errorf("%#x: got %q, addr2line %q", pc, g, want[i])
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d addresses differ", bad, len(pcs))
			}
		})
	}
}

// addr2line runs binutils' addr2line -f -i and formats like frameString.
func addr2line(t *testing.T, bin string, pcs []uint64) []string {
	t.Helper()
	var in bytes.Buffer
	for _, pc := range pcs {
		fmt.Fprintf(&in, "%#x\n", pc)
	}
	cmd := exec.Command("addr2line", "-a", "-f", "-i", "-e", bin)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var res []string
	var cur []Frame
	flush := func() {
		if cur != nil {
			res = append(res, frameString(cur))
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "0x") {
			flush()
			cur = []Frame{}
			continue
		}
		fn := l
		if !sc.Scan() {
			break
		}
		loc := sc.Text()
		if i := strings.Index(loc, " (discriminator"); i >= 0 {
			loc = loc[:i]
		}
		file, line, _ := strings.Cut(loc, ":")
		n, _ := strconv.Atoi(line)
		if fn == "??" && file == "??" {
			continue
		}
		if file == "??" {
			file = ""
		}
		cur = append(cur, Frame{Function: fn, File: file, Line: n})
	}
	flush()
	if len(res) != len(pcs) {
		t.Fatalf("addr2line gave %d results for %d addresses", len(res), len(pcs))
	}
	return res
}

// TestBadDWARF: garbage in .debug_info and .debug_line costs lines, not
// function names, and never panics.
func TestBadDWARF(t *testing.T) {
	b := buildC(t)
	bin := filepath.Join(t.TempDir(), "bad")
	copyFile(t, b.pie, bin)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".debug_info", ".debug_line", ".debug_abbrev"} {
		sec := f.Section(name)
		if sec == nil {
			t.Fatalf("no %s", name)
		}
		for i := sec.Offset + 4; i < sec.Offset+sec.Size; i++ {
			data[i] = byte(i*131) ^ 0x5a
		}
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := New(Options{DebugDirs: []string{}})
	defer s.Close()
	leaf := nmAddr(t, bin, "leaf_func")
	fr := lookupFile(t, s, bin, leaf, leaf+2)
	for _, x := range fr {
		if len(x) == 0 || x[len(x)-1].Function != "leaf_func" {
			t.Errorf("with broken DWARF: %s", frameString(x))
		}
	}
}

// TestConcurrent hammers one file from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	b := buildC(t)
	s := New(Options{DebugDirs: []string{}})
	defer s.Close()
	leaf := nmAddr(t, b.inline, "leaf_func")
	outer := nmAddr(t, b.inline, "outer")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				fr := lookupFile(t, s, b.inline, leaf+uint64(i%8), outer+uint64(i%16))
				if len(fr[0]) == 0 || fr[0][len(fr[0])-1].Function != "leaf_func" {
					t.Errorf("leaf: %s", frameString(fr[0]))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// tinyELF builds a minimal ELF64 executable by hand: one PT_LOAD, a
// build-ID note and a symbol table with two functions.
func tinyELF() []byte {
	le := binary.LittleEndian
	const base = 0x400000
	text := bytes.Repeat([]byte{0x90}, 32)
	note := make([]byte, 16+8)
	le.PutUint32(note[0:], 4)
	le.PutUint32(note[4:], 8)
	le.PutUint32(note[8:], 3)
	copy(note[12:], "GNU\x00")
	copy(note[16:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	strtab := []byte("\x00f1\x00f2\x00")
	shstr := []byte("\x00.text\x00.note.gnu.build-id\x00.symtab\x00.strtab\x00.shstrtab\x00")
	sym := func(name uint32, value, size uint64, shndx uint16) []byte {
		b := make([]byte, 24)
		le.PutUint32(b[0:], name)
		b[4] = byte(elf.STB_GLOBAL)<<4 | byte(elf.STT_FUNC)
		le.PutUint16(b[6:], shndx)
		le.PutUint64(b[8:], value)
		le.PutUint64(b[16:], size)
		return b
	}
	symtab := append(make([]byte, 24), sym(1, base+0x100, 16, 1)...)
	symtab = append(symtab, sym(4, base+0x110, 0, 1)...)

	var body bytes.Buffer
	body.Write(make([]byte, 0x100)) // header + program header, padded
	textOff := body.Len()
	body.Write(text)
	noteOff := body.Len()
	body.Write(note)
	symOff := body.Len()
	body.Write(symtab)
	strOff := body.Len()
	body.Write(strtab)
	shstrOff := body.Len()
	body.Write(shstr)
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}
	shOff := body.Len()
	sh := func(name, typ uint32, flags, addr, off, size uint64, link, info uint32, entsize uint64) {
		b := make([]byte, 64)
		le.PutUint32(b[0:], name)
		le.PutUint32(b[4:], typ)
		le.PutUint64(b[8:], flags)
		le.PutUint64(b[16:], addr)
		le.PutUint64(b[24:], off)
		le.PutUint64(b[32:], size)
		le.PutUint32(b[40:], link)
		le.PutUint32(b[44:], info)
		le.PutUint64(b[48:], 1)
		le.PutUint64(b[56:], entsize)
		body.Write(b)
	}
	sh(0, 0, 0, 0, 0, 0, 0, 0, 0)
	sh(1, uint32(elf.SHT_PROGBITS), uint64(elf.SHF_ALLOC|elf.SHF_EXECINSTR), base+uint64(textOff), uint64(textOff), uint64(len(text)), 0, 0, 0)
	sh(7, uint32(elf.SHT_NOTE), uint64(elf.SHF_ALLOC), base+uint64(noteOff), uint64(noteOff), uint64(len(note)), 0, 0, 0)
	sh(26, uint32(elf.SHT_SYMTAB), 0, 0, uint64(symOff), uint64(len(symtab)), 4, 1, 24)
	sh(34, uint32(elf.SHT_STRTAB), 0, 0, uint64(strOff), uint64(len(strtab)), 0, 0, 0)
	sh(42, uint32(elf.SHT_STRTAB), 0, 0, uint64(shstrOff), uint64(len(shstr)), 0, 0, 0)

	out := body.Bytes()
	copy(out, "\x7fELF")
	out[4], out[5], out[6] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[24:], base+0x100)
	le.PutUint64(out[32:], 64)            // phoff
	le.PutUint64(out[40:], uint64(shOff)) // shoff
	le.PutUint16(out[52:], 64)
	le.PutUint16(out[54:], 56)
	le.PutUint16(out[56:], 1)
	le.PutUint16(out[58:], 64)
	le.PutUint16(out[60:], 6)
	le.PutUint16(out[62:], 5)
	ph := out[64:]
	le.PutUint32(ph[0:], uint32(elf.PT_LOAD))
	le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_X))
	le.PutUint64(ph[8:], 0)
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], uint64(symOff))
	le.PutUint64(ph[40:], uint64(symOff))
	le.PutUint64(ph[48:], 0x1000)
	return out
}

func TestTinyELF(t *testing.T) {
	s := New(Options{DebugDirs: []string{}})
	o, err := s.openReader(bytes.NewReader(tinyELF()), nil, fileKey{}, false, fileSource{path: "/tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if o.buildID != "0102030405060708" || !o.hasFuncs || o.hasLines {
		t.Errorf("object %+v", o)
	}
	m := &Mapping{Start: 0x7f0000000000, Limit: 0x7f0000001000}
	for addr, want := range map[uint64]string{0x7f0000000100: "f1", 0x7f000000010f: "f1", 0x7f0000000115: "f2", 0x7f0000000121: ""} {
		pc, ok := o.fileAddr(m, addr)
		var got string
		if ok {
			if fr := o.lookup(pc); len(fr) == 1 {
				got = fr[0].Function
			}
		}
		if got != want {
			t.Errorf("%#x: got %q, want %q", addr, got, want)
		}
	}
}

// FuzzOpenELF feeds arbitrary bytes through the path real files take:
// header parsing, debug file search, then symbols, DWARF and pclntab.
func FuzzOpenELF(f *testing.F) {
	tiny := tinyELF()
	f.Add(tiny)
	f.Add(tiny[:200])
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	if _, err := exec.LookPath("gcc"); err == nil {
		dir := f.TempDir()
		src := filepath.Join(dir, "t.c")
		os.WriteFile(src, []byte("int g(int x){return x*2;}\nstatic inline __attribute__((always_inline)) int h(int x){return g(x)+1;}\nvoid _start(void){h(3);for(;;);}\n"), 0o644)
		bin := filepath.Join(dir, "t")
		if exec.Command("gcc", "-g", "-O1", "-nostdlib", "-static", "-Wl,--build-id", "-o", bin, src).Run() == nil {
			if data, err := os.ReadFile(bin); err == nil && len(data) < 64<<10 {
				f.Add(data)
			}
		}
	}
	root := f.TempDir()
	// Set to find panics of our own code that recover would hide (the
	// standard library's parsers may panic too).
	noRecover = os.Getenv("SYMBOLIZE_FUZZ_NORECOVER") == "1"
	defer func() { noRecover = false }()
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(Options{Root: root})
		o, err := s.openReader(bytes.NewReader(data), nil, fileKey{}, false, fileSource{path: "/bin/x"})
		if (o == nil) == (err == nil) {
			t.Fatalf("object %v with error %v", o, err)
		}
		if o == nil {
			return
		}
		m := &Mapping{Start: 0x1000, Limit: 0x100000}
		for _, l := range o.loads {
			for _, d := range []uint64{0, 1, l.filesz / 2, l.filesz - 1} {
				if pc, ok := o.fileAddr(m, m.Start+l.off+d); ok {
					o.lookup(pc)
				}
				o.lookup(l.vaddr + d)
			}
		}
		s.Close()
	})
}

// FuzzDWARF feeds arbitrary debug sections to the DWARF index directly,
// which mutating whole ELF files rarely reaches.
func FuzzDWARF(f *testing.F) {
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	if _, err := exec.LookPath("gcc"); err == nil {
		dir := f.TempDir()
		src := filepath.Join(dir, "t.c")
		os.WriteFile(src, []byte("int g(int x){return x*2;}\nstatic inline __attribute__((always_inline)) int h(int x){return g(x)+1;}\nint k(int x){return h(x)*h(x+1);}\n"), 0o644)
		obj := filepath.Join(dir, "t.o")
		for _, v := range []string{"-gdwarf-4", "-gdwarf-5"} {
			if exec.Command("gcc", v, "-O2", "-c", "-o", obj, src).Run() != nil {
				continue
			}
			ef, err := elf.Open(obj)
			if err != nil {
				continue
			}
			sec := func(name string) []byte {
				if s := ef.Section(name); s != nil {
					d, _ := s.Data()
					return d
				}
				return nil
			}
			f.Add(sec(".debug_abbrev"), sec(".debug_info"), sec(".debug_line"), sec(".debug_str"))
			ef.Close()
		}
	}
	noRecover = os.Getenv("SYMBOLIZE_FUZZ_NORECOVER") == "1"
	defer func() { noRecover = false }()
	f.Fuzz(func(t *testing.T, abbrev, info, line, str []byte) {
		d, err := dwarf.New(abbrev, nil, nil, info, line, nil, nil, str)
		if err != nil {
			return
		}
		o := &object{dwDone: true, symsDone: true}
		func() {
			defer ignorePanic()
			o.dw = newDwarfIndex(d)
		}()
		if o.dw == nil {
			return
		}
		for _, sp := range o.dw.cuSpans {
			for _, pc := range []uint64{sp.low, sp.low + 1, (sp.low + sp.high) / 2, sp.high - 1} {
				o.resolve(pc)
			}
		}
	})
}
