package symbolize

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

const sampleKallsyms = `0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81001000 t helper_local
ffffffff81001000 T __helper_alias
ffffffff81002000 W weak_fn
ffffffff81003000 D some_data
ffffffff81004000 T after_data
ffffffffc0201000 t mod_func	[mymod]
ffffffffc0202000 T mod_other	[mymod]
`

func TestParseKallsyms(t *testing.T) {
	k, err := parseKallsyms([]byte(sampleKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr   uint64
		name   string
		module string
	}{
		{0xffffffff81000000, "_stext", ""}, // ties: first listed
		{0xffffffff81000fff, "_stext", ""},
		{0xffffffff81001004, "helper_local", ""}, // plain name before __alias
		{0xffffffff81002001, "weak_fn", ""},
		{0xffffffff81003001, "", ""}, // data
		{0xffffffff81004000, "after_data", ""},
		{0xffffffffc0201010, "mod_func", "mymod"},
		{0xffffffffc0202010, "mod_other", "mymod"},
		{0xffffffffc0202000 + kernelSymMaxSize, "", ""}, // too far past the last symbol
		{0x1000, "", ""},
	} {
		s, ok := k.lookup(c.addr)
		switch {
		case c.name == "" && ok:
			t.Errorf("%#x resolved to %s", c.addr, s.name)
		case c.name != "" && (!ok || s.name != c.name || s.module != c.module):
			t.Errorf("%#x: got %+v %v, want %s [%s]", c.addr, s, ok, c.name, c.module)
		}
	}
	if _, err := parseKallsyms([]byte("0000000000000000 T a\n0000000000000000 t b\n")); !errors.Is(err, ErrKallsymsHidden) {
		t.Errorf("zero addresses: %v, want ErrKallsymsHidden", err)
	}
	if _, err := parseKallsyms([]byte("xyz T a\n")); err == nil {
		t.Error("bad address accepted")
	}
}

func FuzzParseKallsyms(f *testing.F) {
	f.Add([]byte(sampleKallsyms))
	f.Add([]byte("0000000000000000 T a\n"))
	f.Add([]byte("ffffffffffffffff t x [m"))
	f.Add([]byte("1 t \t[]\n\n2 W y [m] extra"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseKallsyms(data)
		if (k == nil) == (err == nil) {
			t.Fatalf("result %v with error %v", k, err)
		}
		if k == nil {
			return
		}
		for i, s := range k.syms {
			if i > 0 && k.syms[i-1].addr >= s.addr {
				t.Fatalf("not sorted and unique at %d", i)
			}
			k.lookup(s.addr)
			k.lookup(s.addr + 1)
			k.lookup(s.addr - 1)
		}
	})
}

// TestKernel resolves a symbol of this machine's kernel back to its name.
func TestKernel(t *testing.T) {
	data, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Skip(err)
	}
	var addr uint64
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == "schedule" && (f[1] == "T" || f[1] == "t") {
			addr, _ = strconv.ParseUint(f[0], 16, 64)
		}
	}
	if addr == 0 {
		t.Skip("schedule not in kallsyms, or addresses hidden (not root)")
	}
	s := New(Options{})
	if err := s.KernelErr(); err != nil {
		t.Fatal(err)
	}
	locs := s.Kernel([]uint64{addr + 1, addr, 1})
	for _, l := range locs[:2] {
		if len(l.Frames) != 1 || l.Frames[0].Function != "schedule" {
			t.Errorf("%#x: %+v", l.Address, l.Frames)
		}
	}
	if len(locs[2].Frames) != 0 {
		t.Errorf("address 1 resolved to %+v", locs[2].Frames)
	}
	m := locs[0].Mapping
	if m == nil || m.File != "[kernel.kallsyms]" || !m.HasFunctions || m != locs[2].Mapping {
		t.Errorf("kernel mapping %+v", m)
	}
	if again := s.Kernel([]uint64{addr})[0]; again.Mapping != m {
		t.Error("kernel mapping not shared between calls")
	}
}

func TestKernelHidden(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(root+"/proc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/proc/kallsyms", []byte("0000000000000000 T schedule\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Root: root})
	if err := s.KernelErr(); !errors.Is(err, ErrKallsymsHidden) {
		t.Errorf("KernelErr = %v", err)
	}
	loc := s.Kernel([]uint64{0xffffffff81000000})[0]
	if loc.Mapping == nil || len(loc.Frames) != 0 {
		t.Errorf("hidden kallsyms: %+v", loc)
	}
}

func TestSymtab(t *testing.T) {
	st := newSymtab([]rawSym{
		{addr: 0x1000, size: 0x10, name: "sized"},
		{addr: 0x1020, size: 0, name: "unsized", secEnd: 0x1100},
		{addr: 0x1040, size: 0x8, name: "__libc_read", rank: nameRank("__libc_read", true, false)},
		{addr: 0x1040, size: 0x8, name: "read", rank: nameRank("read", false, true)},
		{addr: 0x1080, size: 0, name: "last", secEnd: 0x1090},
		{addr: 0x2000, size: 0x100, name: "outer"},
		{addr: 0x2010, size: 0x10, name: "nested"},
	})
	for _, c := range []struct {
		pc   uint64
		want string
	}{
		{0xfff, ""}, {0x1000, "sized"}, {0x100f, "sized"}, {0x1010, ""},
		{0x1020, "unsized"}, {0x103f, "unsized"}, {0x1040, "read"}, {0x1048, ""},
		{0x1080, "last"}, {0x108f, "last"}, {0x1090, ""},
		{0x2011, "nested"}, {0x2020, "outer"}, {0x2100, ""},
	} {
		s := st.lookup(c.pc)
		got := ""
		if s != nil {
			got = s.name
		}
		if got != c.want {
			t.Errorf("lookup(%#x) = %q, want %q", c.pc, got, c.want)
		}
	}
}

func TestFileAddr(t *testing.T) {
	// lld-style layout: segments not page aligned in the file.
	o := &object{loads: []segment{
		{vaddr: 0, off: 0, filesz: 0x5a4},
		{vaddr: 0x15b0, off: 0x5b0, filesz: 0x200, exec: true},
		{vaddr: 0x27b0, off: 0x7b0, filesz: 0x100},
	}}
	m := &Mapping{Start: 0x7f0000001000, Limit: 0x7f0000002000, Offset: 0}
	for _, c := range []struct {
		addr, want uint64
		ok         bool
	}{
		{0x7f00000015b0, 0x15b0, true},
		{0x7f00000016ff, 0x16ff, true},
		{0x7f00000017b0, 0x27b0, true},
		{0x7f00000015a8, 0, false}, // between segments
	} {
		got, ok := o.fileAddr(m, c.addr)
		if got != c.want || ok != c.ok {
			t.Errorf("fileAddr(%#x) = %#x, %v; want %#x, %v", c.addr, got, ok, c.want, c.ok)
		}
	}
}

func TestDemangle(t *testing.T) {
	for in, want := range map[string]string{
		"_ZN2ns5Klass6methodEi":                             "ns::Klass::method",
		"_ZNK2ns3BoxIlE3getEv":                              "ns::Box::get",
		"_ZN4core3fmt5write17h0123456789abcdefE":            "core::fmt::write",
		"_ZN3std2rt10lang_start17h1a2b3c4d5e6f7081E.llvm.1": "std::rt::lang_start",
		"_RNvCs15kBYyAo9fc_7mycrate7example":                "mycrate::example",
		"_ZN2ns5Klass6methodEi.constprop.0":                 "ns::Klass::method",
		"foo.constprop.0":                                   "foo",
		"foo.part.0.isra.0":                                 "foo",
		"foo.cold":                                          "foo",
		"main.(*T).Method":                                  "main.(*T).Method",
		"v1.2":                                              "v1.2",
		"_Zbogus":                                           "_Zbogus",
		"plain":                                             "plain",
	} {
		if got := demangleName(in); got != want {
			t.Errorf("demangleName(%q) = %q, want %q", in, got, want)
		}
	}
}
