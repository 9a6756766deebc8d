package gopclntab

import (
	"bytes"
	"debug/elf"
	"hash/fnv"
	"math/rand"
	"os"
	"testing"
)

// exerciseTable looks up table entries, their neighbours and
// pseudo-random pcs around the text; it must never panic.
func exerciseTable(tb *Table, seed uint64) {
	_ = tb.Version()
	n := tb.h.nfunc
	for i := 0; i < n && i < 64; i++ {
		e := tb.entry(i)
		tb.Lookup(e)
		tb.Lookup(e + 1)
		tb.Lookup(e - 1)
		tb.Lookup(tb.entry(i+1) - 1)
	}
	lo, hi := tb.entry(0), tb.entry(n)
	r := rand.New(rand.NewSource(int64(seed)))
	for k := 0; k < 64; k++ {
		pc := r.Uint64()
		if hi > lo {
			pc = lo + pc%(hi-lo+32) - 16
		}
		tb.Lookup(pc)
		tb.Lookup(pc) // cached path
	}
}

func FuzzOpen(f *testing.F) {
	for _, ver := range []format{fmt116, fmt118, fmt120} {
		f.Add(synBinary(ver, false))
		f.Add(synBinary(ver, true))
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		tb, err := Open(ef)
		if err != nil {
			return
		}
		h := fnv.New64a()
		h.Write(data)
		exerciseTable(tb, h.Sum64())
	})
}

// checkCorrupted flips random bytes of a real binary's pclntab, funcdata
// and moduledata and checks that Open and Lookup fail gracefully.
func checkCorrupted(t *testing.T, bin string) {
	if bin == "" {
		t.Skip("fixture missing")
	}
	orig, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	var spans [][2]uint64
	for _, name := range []string{".gopclntab", ".go.module", ".rodata"} {
		if s := ef.Section(name); s != nil {
			spans = append(spans, [2]uint64{s.Offset, s.Size})
		}
	}
	r := rand.New(rand.NewSource(1))
	data := make([]byte, len(orig))
	iters := 150
	if testing.Short() {
		iters = 20
	}
	opened := 0
	for it := 0; it < iters; it++ {
		copy(data, orig)
		sp := spans[r.Intn(len(spans))]
		// Mostly hit the header and functab, where damage matters most.
		for k := 0; k < 1+r.Intn(16); k++ {
			off := sp[0] + uint64(r.Int63n(int64(min(sp[1], 1<<12))))
			if r.Intn(2) == 0 {
				off = sp[0] + uint64(r.Int63n(int64(sp[1])))
			}
			data[off] = byte(r.Intn(256))
		}
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			continue
		}
		tb, err := Open(ef)
		if err != nil {
			continue
		}
		opened++
		exerciseTable(tb, uint64(it))
	}
	t.Logf("%d of %d corrupted binaries still opened", opened, iters)
}

// FuzzPclntab fuzzes the table bytes directly, wrapped in a well-formed
// ELF, so mutations reach the decoders instead of failing in debug/elf.
func FuzzPclntab(f *testing.F) {
	for _, ver := range []format{fmt116, fmt118, fmt120} {
		tab, gofunc := synPclntab(ver)
		md := []byte(nil)
		if ver >= fmt118 {
			md = synModuledata(ver, tab, gofunc)
		}
		f.Add(tab, md, false)
		f.Add(tab, md, true)
	}
	f.Fuzz(func(t *testing.T, tab, md []byte, hide bool) {
		pclnName, mdName := ".gopclntab", ".go.module"
		if hide {
			pclnName, mdName = ".rodata", ".noptrdata"
		}
		bin := synELF([]synSection{
			{".text", synText, elf.SHF_ALLOC | elf.SHF_EXECINSTR, make([]byte, 0x100)},
			{pclnName, synPcln, elf.SHF_ALLOC, tab},
			{mdName, synData, elf.SHF_ALLOC | elf.SHF_WRITE, md},
		})
		ef, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("synthetic ELF rejected: %v", err)
		}
		tb, err := Open(ef)
		if err != nil {
			return
		}
		h := fnv.New64a()
		h.Write(tab)
		exerciseTable(tb, h.Sum64())
	})
}
