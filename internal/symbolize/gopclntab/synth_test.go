package gopclntab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"reflect"
	"testing"
)

// A tiny, hand-assembled pclntab for each supported format version. Real
// binaries only come from this machine's toolchain, so these cover the
// older layouts and give the fuzzer small, deep-reaching seeds.

type synRun struct {
	end uint32
	val int32
}

type synInl struct {
	name      string
	parentPc  int32
	startLine int32
}

type synFunc struct {
	name       string
	size       uint32
	startLine  int32
	file, line []synRun
	inl        []synRun
	tree       []synInl
}

const (
	synText = 0x401000
	synPcln = 0x500000
	synData = 0x600000
)

var synFuncs = []synFunc{
	{
		name: "main.f0", size: 0x40, startLine: 9,
		file: []synRun{{0x40, 0}},
		line: []synRun{{0x10, 10}, {0x40, 11}},
	},
	{
		name: "main.f1", size: 0x80, startLine: 19,
		file: []synRun{{0x20, 0}, {0x40, 1}, {0x80, 0}},
		line: []synRun{{0x10, 20}, {0x20, 21}, {0x30, 101}, {0x40, 201}, {0x80, 22}},
		inl:  []synRun{{0x20, -1}, {0x30, 0}, {0x40, 1}, {0x80, -1}},
		tree: []synInl{{"main.inl", 0x8, 100}, {"main.deep", 0x28, 200}},
	},
	{
		name: "main.f2", size: 0x20, startLine: 30,
		file: []synRun{{0x20, 1}},
		line: []synRun{{0x20, 31}},
	},
}

func synPcvalue(runs []synRun) []byte {
	var out []byte
	prevVal, prevPC := int32(-1), uint32(0)
	for _, r := range runs {
		d := r.val - prevVal
		out = binary.AppendUvarint(out, uint64(uint32(d<<1)^uint32(d>>31)))
		out = binary.AppendUvarint(out, uint64(r.end-prevPC))
		prevVal, prevPC = r.val, r.end
	}
	return append(out, 0)
}

// synPclntab returns the table bytes (mapped at synPcln) and the address
// of its funcdata area.
func synPclntab(ver format) ([]byte, uint64) {
	le := binary.LittleEndian
	const ps = 8
	hdrWords := 8
	magic := uint32(magic120)
	switch ver {
	case fmt118:
		magic = magic118
	case fmt116:
		magic, hdrWords = magic116, 7
	}
	nameOff := map[string]uint32{}
	names := []byte{0}
	addName := func(n string) {
		if _, ok := nameOff[n]; !ok {
			nameOff[n] = uint32(len(names))
			names = append(append(names, n...), 0)
		}
	}
	for _, f := range synFuncs {
		addName(f.name)
		for _, c := range f.tree {
			addName(c.name)
		}
	}
	filetab := []byte("a.go\x00b.go\x00")
	cutab := le.AppendUint32(le.AppendUint32(nil, 0), 5)
	pctab := []byte{0}
	type offs struct{ file, line, inl uint32 }
	var tabs []offs
	for _, f := range synFuncs {
		var o offs
		o.file = uint32(len(pctab))
		pctab = append(pctab, synPcvalue(f.file)...)
		o.line = uint32(len(pctab))
		pctab = append(pctab, synPcvalue(f.line)...)
		if f.inl != nil {
			o.inl = uint32(len(pctab))
			pctab = append(pctab, synPcvalue(f.inl)...)
		}
		tabs = append(tabs, o)
	}

	hdrSize := 8 + hdrWords*ps
	funcnameOff := hdrSize
	cuOff := funcnameOff + len(names)
	fileOff := cuOff + len(cutab)
	pctabOff := fileOff + len(filetab)
	pclnOff := (pctabOff + len(pctab) + 7) &^ 7

	// functab, then the _func records, then the inline trees.
	field := 4
	if ver == fmt116 {
		field = ps
	}
	n := len(synFuncs)
	pcln := make([]byte, (2*n+1)*field)
	putField := func(i int, v uint64) {
		if field == 4 {
			le.PutUint32(pcln[i*4:], uint32(v))
		} else {
			le.PutUint64(pcln[i*8:], v)
		}
	}
	entry := uint64(0)
	entries := make([]uint64, n+1)
	for i, f := range synFuncs {
		entries[i] = entry
		entry += uint64(f.size)
	}
	entries[n] = entry
	abs := func(e uint64) uint64 {
		if ver == fmt116 {
			return synText + e
		}
		return e
	}
	// Lay out records first to learn where the trees go.
	recOff := make([]int, n)
	var recs [][]byte
	pos := len(pcln)
	for i, f := range synFuncs {
		pos = (pos + 7) &^ 7
		recOff[i] = pos
		var r []byte
		if ver == fmt116 {
			r = le.AppendUint64(r, synText+entries[i])
		} else {
			r = le.AppendUint32(r, uint32(entries[i]))
		}
		npcdata, nfuncdata := 0, 0
		if f.tree != nil {
			npcdata, nfuncdata = 3, 4
		}
		r = le.AppendUint32(r, nameOff[f.name])
		r = le.AppendUint32(r, 0) // args
		r = le.AppendUint32(r, 0) // deferreturn
		r = le.AppendUint32(r, 0) // pcsp
		r = le.AppendUint32(r, tabs[i].file)
		r = le.AppendUint32(r, tabs[i].line)
		r = le.AppendUint32(r, uint32(npcdata))
		r = le.AppendUint32(r, 0) // cuOffset
		if ver >= fmt120 {
			r = le.AppendUint32(r, uint32(f.startLine))
		}
		r = append(r, 0, 0, 0, byte(nfuncdata))
		for j := 0; j < npcdata; j++ {
			v := uint32(0)
			if j == pcdataInlTreeIndex {
				v = tabs[i].inl
			}
			r = le.AppendUint32(r, v)
		}
		if ver == fmt116 && nfuncdata > 0 {
			if (synPcln+pclnOff+pos+len(r))&4 != 0 {
				r = append(r, 0, 0, 0, 0)
			}
			r = append(r, make([]byte, nfuncdata*ps)...)
		} else {
			r = append(r, make([]byte, nfuncdata*4)...)
		}
		recs = append(recs, r)
		pos += len(r)
	}
	gofuncRel := (pos + 7) &^ 7
	var trees []byte
	treeOff := make([]int, n)
	for i, f := range synFuncs {
		if f.tree == nil {
			continue
		}
		treeOff[i] = len(trees)
		for _, c := range f.tree {
			if ver >= fmt120 {
				trees = append(trees, 0, 0, 0, 0)
				trees = le.AppendUint32(trees, nameOff[c.name])
				trees = le.AppendUint32(trees, uint32(c.parentPc))
				trees = le.AppendUint32(trees, uint32(c.startLine))
			} else {
				trees = append(trees, 0xff, 0xff, 0, 0) // parent -1, funcID, pad
				trees = le.AppendUint32(trees, 0)       // file
				trees = le.AppendUint32(trees, 0)       // line
				trees = le.AppendUint32(trees, nameOff[c.name])
				trees = le.AppendUint32(trees, uint32(c.parentPc))
			}
		}
	}
	gofuncAddr := uint64(synPcln + pclnOff + gofuncRel)
	for i, f := range synFuncs {
		putField(2*i, abs(entries[i]))
		putField(2*i+1, uint64(recOff[i]))
		if f.tree != nil {
			r := recs[i]
			fd := len(r) - 4*4
			if ver == fmt116 {
				fd = len(r) - 4*ps
				le.PutUint64(r[fd+funcdataInlTree*ps:], gofuncAddr+uint64(treeOff[i]))
			} else {
				for j := 0; j < 4; j++ {
					le.PutUint32(r[fd+4*j:], noTable)
				}
				le.PutUint32(r[fd+funcdataInlTree*4:], uint32(treeOff[i]))
			}
		}
	}
	putField(2*n, abs(entries[n]))
	for i, r := range recs {
		for len(pcln) < recOff[i] {
			pcln = append(pcln, 0)
		}
		pcln = append(pcln, r...)
	}
	for len(pcln) < gofuncRel {
		pcln = append(pcln, 0)
	}
	pcln = append(pcln, trees...)

	out := make([]byte, pclnOff)
	le.PutUint32(out, magic)
	out[6], out[7] = 1, ps
	words := []uint64{uint64(n), 2}
	if ver >= fmt118 {
		words = append(words, 0) // textStart: left to the moduledata, as in Go 1.26
	}
	words = append(words, uint64(funcnameOff), uint64(cuOff), uint64(fileOff), uint64(pctabOff), uint64(pclnOff))
	for i, w := range words {
		le.PutUint64(out[8+8*i:], w)
	}
	copy(out[funcnameOff:], names)
	copy(out[cuOff:], cutab)
	copy(out[fileOff:], filetab)
	copy(out[pctabOff:], pctab)
	out = append(out, pcln...)
	return out, gofuncAddr
}

// synModuledata builds a moduledata for the table at synPcln.
func synModuledata(ver format, tab []byte, gofunc uint64) []byte {
	le := binary.LittleEndian
	h, err := parseHeader(tab, le)
	if err != nil {
		panic(err)
	}
	w := make([]uint64, 48)
	w[mdPcHeader] = synPcln
	w[mdFuncnametab] = synPcln + h.funcnameOff
	w[mdPclntable] = synPcln + h.pclnOff
	w[mdFtab] = synPcln + h.pclnOff
	w[mdFtabLen] = uint64(h.nfunc) + 1
	w[mdMinpc] = synText
	w[mdText] = synText
	if ver >= fmt120 {
		w[mdGofunc120] = gofunc
	} else {
		w[mdGofunc118] = gofunc
	}
	out := make([]byte, 16) // something before it, as in .noptrdata
	for _, v := range w {
		out = le.AppendUint64(out, v)
	}
	return out
}

type synSection struct {
	name  string
	addr  uint64
	flags elf.SectionFlag
	data  []byte
}

// synELF writes a minimal little-endian ELF64 executable.
func synELF(secs []synSection) []byte {
	le := binary.LittleEndian
	shstr := []byte{0}
	nameOff := make([]uint32, len(secs))
	for i, s := range secs {
		nameOff[i] = uint32(len(shstr))
		shstr = append(append(shstr, s.name...), 0)
	}
	buf := make([]byte, 64)
	offs := make([]uint64, len(secs))
	for i, s := range secs {
		for len(buf)%8 != 0 {
			buf = append(buf, 0)
		}
		offs[i] = uint64(len(buf))
		buf = append(buf, s.data...)
	}
	shstrOff := uint64(len(buf))
	buf = append(buf, shstr...)
	for len(buf)%8 != 0 {
		buf = append(buf, 0)
	}
	shoff := uint64(len(buf))
	sh := func(name uint32, typ elf.SectionType, flags elf.SectionFlag, addr, off, size uint64) {
		var b [64]byte
		le.PutUint32(b[0:], name)
		le.PutUint32(b[4:], uint32(typ))
		le.PutUint64(b[8:], uint64(flags))
		le.PutUint64(b[16:], addr)
		le.PutUint64(b[24:], off)
		le.PutUint64(b[32:], size)
		le.PutUint64(b[48:], 8)
		buf = append(buf, b[:]...)
	}
	sh(0, elf.SHT_NULL, 0, 0, 0, 0)
	for i, s := range secs {
		sh(nameOff[i], elf.SHT_PROGBITS, s.flags, s.addr, offs[i], uint64(len(s.data)))
	}
	sh(0, elf.SHT_STRTAB, 0, 0, shstrOff, uint64(len(shstr))) // unnamed .shstrtab
	copy(buf[0:], []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(buf[16:], uint16(elf.ET_EXEC))
	le.PutUint16(buf[18:], uint16(elf.EM_X86_64))
	le.PutUint32(buf[20:], 1)
	le.PutUint64(buf[24:], synText)
	le.PutUint64(buf[40:], shoff)
	le.PutUint16(buf[52:], 64)
	le.PutUint16(buf[58:], 64)
	le.PutUint16(buf[60:], uint16(len(secs)+2))
	le.PutUint16(buf[62:], uint16(len(secs)+1))
	return buf
}

// synBinary builds a complete synthetic binary of the given format.
// hideNames renames the pclntab and moduledata sections so they must be
// found by content.
func synBinary(ver format, hideNames bool) []byte {
	tab, gofunc := synPclntab(ver)
	pclnName, mdName := ".gopclntab", ".go.module"
	if ver < fmt120 {
		mdName = ".noptrdata"
	}
	if hideNames {
		pclnName, mdName = ".rodata", ".data"
	}
	secs := []synSection{
		{".text", synText, elf.SHF_ALLOC | elf.SHF_EXECINSTR, make([]byte, 0x100)},
		{pclnName, synPcln, elf.SHF_ALLOC, tab},
	}
	if ver >= fmt118 {
		secs = append(secs, synSection{mdName, synData, elf.SHF_ALLOC | elf.SHF_WRITE, synModuledata(ver, tab, gofunc)})
	}
	return synELF(secs)
}

func TestSynthetic(t *testing.T) {
	f1 := uint64(synText + 0x40)
	for _, ver := range []format{fmt116, fmt118, fmt120} {
		for _, hide := range []bool{false, true} {
			name := ver.String()
			if hide {
				name += "-hidden"
			}
			t.Run(name, func(t *testing.T) {
				f, err := elf.NewFile(bytes.NewReader(synBinary(ver, hide)))
				if err != nil {
					t.Fatal(err)
				}
				tb, err := Open(f)
				if err != nil {
					t.Fatal(err)
				}
				if tb.Version() != ver.String() {
					t.Errorf("Version = %s", tb.Version())
				}
				sl := func(v int) int {
					if ver < fmt120 {
						return 0 // start lines arrived in 1.20
					}
					return v
				}
				cases := []struct {
					pc   uint64
					want []Frame
				}{
					{synText, []Frame{{"main.f0", "a.go", 10, sl(9)}}},
					{synText + 0x3f, []Frame{{"main.f0", "a.go", 11, sl(9)}}},
					{f1 + 0x18, []Frame{{"main.f1", "a.go", 21, sl(19)}}},
					{f1 + 0x20, []Frame{{"main.inl", "b.go", 101, sl(100)}, {"main.f1", "a.go", 20, sl(19)}}},
					{f1 + 0x38, []Frame{
						{"main.deep", "b.go", 201, sl(200)},
						{"main.inl", "b.go", 101, sl(100)},
						{"main.f1", "a.go", 20, sl(19)}}},
					{f1 + 0x40, []Frame{{"main.f1", "a.go", 22, sl(19)}}},
					{synText + 0xc0, []Frame{{"main.f2", "b.go", 31, sl(30)}}},
					{synText + 0xe0, nil},
					{synText - 1, nil},
				}
				for _, c := range cases {
					for range 2 { // cold, then cached
						if got := tb.Lookup(c.pc); !reflect.DeepEqual(got, c.want) {
							t.Errorf("Lookup(%#x) = %+v, want %+v", c.pc, got, c.want)
						}
					}
				}
			})
		}
	}
}
