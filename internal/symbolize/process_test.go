package symbolize

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{cBinDir(), goBinDir()} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

func cBinDir() string {
	if cBin != nil {
		return cBin.dir
	}
	return ""
}

func goBinDir() string {
	if goBins[0] != "" {
		return filepath.Dir(goBins[0])
	}
	return ""
}

type wantFrame struct {
	fn   string
	file string // base name
	line int
}

func checkFrames(t *testing.T, what string, got []Frame, want ...wantFrame) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		g, w := got[i], want[i]
		if g.Function != w.fn || filepath.Base(g.File) != w.file || (w.line != 0 && g.Line != w.line) {
			ok = false
		}
	}
	if !ok {
		var ws []string
		for _, w := range want {
			ws = append(ws, w.fn+" "+w.file+":"+itoa(w.line))
		}
		t.Errorf("%s: got %s, want %s", what, frameString(got), strings.Join(ws, " <- "))
	}
}

func itoa(n int) string {
	if n == 0 {
		return "*"
	}
	return strconv.Itoa(n)
}

func TestProcessC(t *testing.T) {
	b := buildC(t)
	// The entry has rows for both lines; like addr2line, the last wins.
	leafBody := markLine(t, "fixture.c", "leaf_body")
	leafDecl := markLine(t, "fixture.c", "leaf_decl")
	helperCall := markLine(t, "fixture.c", "helper_call")
	outerCall := markLine(t, "fixture.c", "outer_call")
	outerDecl := markLine(t, "fixture.c", "outer_decl")
	for _, bin := range []string{b.pie, b.nopie, b.inline} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			fx := start(t, bin)
			s := New(Options{})
			defer s.Close()
			p, err := s.Attach(fx.pid())
			if err != nil {
				t.Fatal(err)
			}
			locs := p.Locations([]uint64{fx.vals["leaf"], fx.vals["ret"] - 1, fx.vals["main"], 0x10})
			leaf, ret, mainLoc, none := locs[0], locs[1], locs[2], locs[3]
			checkFrames(t, "leaf_func", leaf.Frames, wantFrame{"leaf_func", "fixture.c", leafBody})
			if len(leaf.Frames) == 1 && leaf.Frames[0].StartLine != leafDecl {
				t.Errorf("leaf_func StartLine = %d, want %d", leaf.Frames[0].StartLine, leafDecl)
			}
			checkFrames(t, "inlined call", ret.Frames,
				wantFrame{"helper", "fixture.c", helperCall},
				wantFrame{"outer", "fixture.c", outerCall})
			if len(ret.Frames) == 2 && ret.Frames[1].StartLine != outerDecl {
				t.Errorf("outer StartLine = %d, want %d", ret.Frames[1].StartLine, outerDecl)
			}
			checkFrames(t, "main", mainLoc.Frames, wantFrame{"main", "fixture.c", 0})
			if none.Mapping != nil || len(none.Frames) != 0 {
				t.Errorf("address 0x10 resolved to %+v", none)
			}
			m := leaf.Mapping
			if m == nil {
				t.Fatal("no mapping for leaf_func")
			}
			if m != ret.Mapping || m != mainLoc.Mapping || m != p.Main() {
				t.Errorf("mappings of one segment differ: %p %p %p main %p", m, ret.Mapping, mainLoc.Mapping, p.Main())
			}
			if m.File != bin {
				t.Errorf("mapping file %q, want %q", m.File, bin)
			}
			if want := buildID(t, bin); m.BuildID != want {
				t.Errorf("build ID %q, want %q", m.BuildID, want)
			}
			if !m.HasFunctions || !m.HasFilenames || !m.HasLineNumbers || !m.HasInlineFrames {
				t.Errorf("mapping flags: %+v", *m)
			}
			if fx.vals["leaf"] < m.Start || fx.vals["leaf"] >= m.Limit {
				t.Errorf("leaf %#x outside mapping %#x-%#x", fx.vals["leaf"], m.Start, m.Limit)
			}
			st := s.Stats()
			if st.Resolved < 3 || st.Unresolved < 1 || st.FilesOpened < 2 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestProcessSharedLib(t *testing.T) {
	b := buildC(t)
	fx := start(t, b.libmain)
	s := New(Options{})
	defer s.Close()
	p, err := s.Attach(fx.pid())
	if err != nil {
		t.Fatal(err)
	}
	locs := p.Locations([]uint64{fx.vals["lib"], fx.vals["libret"] - 1, fx.vals["leaf"]})
	checkFrames(t, "lib_hidden", locs[0].Frames, wantFrame{"lib_hidden", "fixturelib.c", markLine(t, "fixturelib.c", "lib_decl")})
	checkFrames(t, "lib call", locs[1].Frames, wantFrame{"lib_hidden", "fixturelib.c", markLine(t, "fixturelib.c", "lib_call")})
	checkFrames(t, "leaf_func", locs[2].Frames, wantFrame{"leaf_func", "fixture.c", markLine(t, "fixture.c", "leaf_body")})
	if m := locs[0].Mapping; m == nil || m.File != b.lib || m.BuildID != buildID(t, b.lib) {
		t.Errorf("library mapping %+v", m)
	}
	if m := p.Main(); m == nil || m.File != b.libmain {
		t.Errorf("main mapping %+v", m)
	}
	if locs[0].Mapping == locs[2].Mapping {
		t.Error("library and executable share a mapping")
	}
}

func TestSeparateDebugFile(t *testing.T) {
	b := buildC(t)
	leafBody := markLine(t, "fixture.c", "leaf_body")

	t.Run("build-id", func(t *testing.T) {
		// Root holds the debug tree; its proc is the real one.
		if err := os.Symlink("/proc", filepath.Join(b.debugRoot, "proc")); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		fx := start(t, b.stripped)
		s := New(Options{Root: b.debugRoot})
		defer s.Close()
		p, err := s.Attach(fx.pid())
		if err != nil {
			t.Fatal(err)
		}
		loc := p.Locations([]uint64{fx.vals["leaf"]})[0]
		checkFrames(t, "leaf_func", loc.Frames, wantFrame{"leaf_func", "fixture.c", leafBody})
		if st := s.Stats(); st.DebugFiles < 1 {
			t.Errorf("stats %+v, want a debug file", st)
		}
		if m := loc.Mapping; m == nil || !m.HasLineNumbers || !m.HasFunctions {
			t.Errorf("mapping %+v", m)
		}

		// Without the debug tree, a stripped PIE has no name for it.
		s2 := New(Options{DebugDirs: []string{}})
		defer s2.Close()
		p2, err := s2.Attach(fx.pid())
		if err != nil {
			t.Fatal(err)
		}
		loc = p2.Locations([]uint64{fx.vals["leaf"]})[0]
		if len(loc.Frames) != 0 || loc.Mapping == nil || loc.Mapping.HasLineNumbers {
			t.Errorf("stripped without debug file: %+v %+v", loc, loc.Mapping)
		}
	})

	t.Run("debuglink", func(t *testing.T) {
		fx := start(t, b.linked)
		s := New(Options{DebugDirs: []string{}})
		defer s.Close()
		p, err := s.Attach(fx.pid())
		if err != nil {
			t.Fatal(err)
		}
		loc := p.Locations([]uint64{fx.vals["leaf"]})[0]
		checkFrames(t, "leaf_func", loc.Frames, wantFrame{"leaf_func", "fixture.c", leafBody})
		if m := loc.Mapping; m == nil || m.BuildID != "" {
			t.Errorf("mapping %+v, want no build ID", m)
		}
	})

	t.Run("debuglink-crc-mismatch", func(t *testing.T) {
		dir := t.TempDir()
		bin := filepath.Join(dir, "linked")
		copyFile(t, b.linked, bin)
		// A debug file of another binary under the expected name.
		run(t, dir, "objcopy", "--only-keep-debug", b.pie, filepath.Join(dir, "linked.debug"))
		fx := start(t, bin)
		s := New(Options{DebugDirs: []string{}})
		defer s.Close()
		p, err := s.Attach(fx.pid())
		if err != nil {
			t.Fatal(err)
		}
		loc := p.Locations([]uint64{fx.vals["leaf"]})[0]
		if len(loc.Frames) != 0 {
			t.Errorf("used a debug file with the wrong CRC: %s", frameString(loc.Frames))
		}
		if st := s.Stats(); st.DebugFiles != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestProcessExitAndCache(t *testing.T) {
	b := buildC(t)
	fx1 := start(t, b.pie)
	fx2 := start(t, b.pie)
	s := New(Options{})
	defer s.Close()
	p1, err := s.Attach(fx1.pid())
	if err != nil {
		t.Fatal(err)
	}
	opened := s.Stats().FilesOpened
	p2, err := s.Attach(fx2.pid())
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.FilesOpened != opened || st.CacheHits == 0 {
		t.Errorf("second process of the same binary opened files again: %+v (before %d)", st, opened)
	}
	if p1.Main() == p2.Main() {
		t.Error("two processes share a *Mapping")
	}

	// Symbolize after the process is gone: files were opened at Attach.
	fx1.stop()
	if err := p1.Refresh(); err != nil {
		t.Fatal(err)
	}
	if !p1.Exited() {
		t.Error("Exited() = false after the process ended")
	}
	loc := p1.Locations([]uint64{fx1.vals["leaf"]})[0]
	checkFrames(t, "after exit", loc.Frames, wantFrame{"leaf_func", "fixture.c", markLine(t, "fixture.c", "leaf_body")})

	// A live process keeps its mappings (and pointers) across Refresh.
	m := p2.Main()
	if err := p2.Refresh(); err != nil {
		t.Fatal(err)
	}
	if p2.Exited() || p2.Main() != m {
		t.Errorf("refresh of a live process: exited %v, main %p -> %p", p2.Exited(), m, p2.Main())
	}
}

func TestAttachNoProcess(t *testing.T) {
	s := New(Options{})
	_, err := s.Attach(1 << 30)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Attach of a missing pid: %v, want os.ErrNotExist", err)
	}
}

func TestVDSO(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	p, err := s.Attach(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var vdso *region
	for i := range p.regions {
		if p.regions[i].m.File == "[vdso]" {
			vdso = &p.regions[i]
		}
	}
	if vdso == nil {
		t.Skip("no [vdso] mapping")
	}
	if !vdso.m.HasFunctions || vdso.m.BuildID == "" {
		t.Errorf("vdso mapping %+v", *vdso.m)
	}
	// Find a vDSO function through our own copy of the image.
	img := make([]byte, vdso.m.Limit-vdso.m.Start)
	f, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(img, int64(vdso.m.Start)); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, sym := range syms {
		if sym.Name != "__vdso_clock_gettime" {
			continue
		}
		var bias uint64
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_LOAD {
				bias = prog.Vaddr - prog.Off
				break
			}
		}
		addr := vdso.m.Start + sym.Value - bias + 1
		loc := p.Locations([]uint64{addr})[0]
		if len(loc.Frames) == 0 || !strings.HasSuffix(loc.Frames[0].Function, "clock_gettime") {
			t.Errorf("vdso address: %s", frameString(loc.Frames))
		}
		return
	}
	t.Skip("vdso has no __vdso_clock_gettime")
}
