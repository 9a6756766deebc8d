package symbolize

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	benchOnce sync.Once
	benchBins map[string]string
	benchErr  error
)

// benchFixtures builds a C program with many functions and inlined calls,
// with DWARF and with symbols only.
func benchFixtures(b *testing.B) map[string]string {
	needTools(b, "gcc", "strip")
	benchOnce.Do(func() {
		dir := b.TempDir()
		var src strings.Builder
		src.WriteString("volatile int sink;\n")
		const n = 2000
		for i := 0; i < n; i++ {
			fmt.Fprintf(&src, "static inline __attribute__((always_inline)) int in%d(int x) { sink += x; return x * %d; }\n", i, i+3)
			fmt.Fprintf(&src, "__attribute__((noinline)) int fn%d(int x) {\n\tint r = in%d(x);\n\tsink += r;\n\treturn in%d(r) + 1;\n}\n", i, i, i)
		}
		src.WriteString("int main(void) { int r = 0;\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&src, "r += fn%d(%d);\n", i, i)
		}
		src.WriteString("return r; }\n")
		c := filepath.Join(dir, "many.c")
		if benchErr = os.WriteFile(c, []byte(src.String()), 0o644); benchErr != nil {
			return
		}
		benchBins = map[string]string{"dwarf": filepath.Join(dir, "many"), "symtab": filepath.Join(dir, "many-sym")}
		if benchErr = sh(dir, "gcc", "-g", "-O2", "-o", benchBins["dwarf"], c); benchErr != nil {
			return
		}
		benchErr = sh(dir, "strip", "--strip-debug", "-o", benchBins["symtab"], benchBins["dwarf"])
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchBins
}

// benchAddrs returns a few addresses inside every function of bin.
func benchAddrs(b *testing.B, bin string) []uint64 {
	f, err := elf.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		b.Fatal(err)
	}
	var out []uint64
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			for _, d := range []uint64{0, s.Size / 3, s.Size * 2 / 3} {
				out = append(out, s.Value+d)
			}
		}
	}
	return out
}

// BenchmarkSymbolize reports addresses per second, cold (new Symbolizer:
// opening and indexing the file included) and cached (same addresses
// again), through Process.Locations.
func BenchmarkSymbolize(b *testing.B) {
	bins := benchFixtures(b)
	goBin, _ := buildGo(b)
	cases := []struct{ name, bin, addrsFrom string }{
		{"symtab", bins["symtab"], bins["symtab"]},
		{"dwarf", bins["dwarf"], bins["dwarf"]},
		{"gopclntab", goBin, goBin},
	}
	for _, c := range cases {
		addrs := benchAddrs(b, c.addrsFrom)
		// A mapping whose addresses equal link-time ones keeps the setup
		// free of a live process; the translation still runs.
		proc := func(s *Symbolizer) *Process {
			o, err := s.openPath(c.bin)
			if err != nil {
				b.Fatal(err)
			}
			var m *Mapping
			for _, l := range o.loads {
				if l.exec {
					m = &Mapping{Start: l.vaddr, Limit: l.vaddr + l.filesz, Offset: l.off, File: c.bin}
				}
			}
			return &Process{s: s, regions: []region{{m: m, obj: o}}, main: m}
		}
		check := func(b *testing.B, locs []Location) {
			for _, l := range locs {
				if len(l.Frames) == 0 {
					b.Fatalf("%#x unresolved", l.Address)
				}
			}
		}
		b.Run(c.name+"/cold", func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				s := New(Options{DebugDirs: []string{}})
				locs := proc(s).Locations(addrs)
				if i == 0 {
					check(b, locs)
				}
				s.Close()
			}
			b.ReportMetric(float64(len(addrs)*b.N)/time.Since(start).Seconds(), "addrs/s")
			b.ReportMetric(float64(len(addrs)), "addrs/op")
		})
		b.Run(c.name+"/cached", func(b *testing.B) {
			s := New(Options{DebugDirs: []string{}})
			defer s.Close()
			p := proc(s)
			check(b, p.Locations(addrs))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				p.Locations(addrs)
			}
			b.ReportMetric(float64(len(addrs)*b.N)/time.Since(start).Seconds(), "addrs/s")
			b.ReportMetric(float64(len(addrs)), "addrs/op")
		})
	}
}
