package gopclntab

// Indices of the tables the symbolizer needs.
const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3

	maxInlineDepth = 64
	noTable        = 0xffffffff
)

// rawFunc is a decoded _func record.
type rawFunc struct {
	entry     uint64 // absolute
	end       uint64
	nameOff   int32
	pcfile    uint32
	pcln      uint32
	cuOffset  uint32
	startLine int32
	inlIndex  uint32 // pctab offset of PCDATA_InlTreeIndex, 0 if none
	inlTree   uint64 // address of FUNCDATA_InlTree, 0 if none
}

// funcState is a function with its tables decoded, cached between
// lookups.
type funcState struct {
	rawFunc
	name  string
	file  runs
	line  runs
	inl   runs
	calls map[int32]*inlCall
}

// inlCall is one decoded inline tree entry.
type inlCall struct {
	name      string
	parentPc  int32
	startLine int32
	ok        bool
}

func (t *Table) u32(b []byte, off uint64) (uint32, bool) {
	if off > uint64(len(b)) || uint64(len(b))-off < 4 {
		return 0, false
	}
	return t.h.order.Uint32(b[off:]), true
}

func (t *Table) uptr(b []byte, off uint64) (uint64, bool) {
	if t.h.ptrSize == 4 {
		v, ok := t.u32(b, off)
		return uint64(v), ok
	}
	if off > uint64(len(b)) || uint64(len(b))-off < 8 {
		return 0, false
	}
	return t.h.order.Uint64(b[off:]), true
}

// entry returns the absolute entry address of function i (i == nfunc
// gives the end of the last function).
func (t *Table) entry(i int) uint64 {
	v := t.h.entryRaw(i)
	if t.h.ver >= fmt118 {
		return t.textStart + v
	}
	return v
}

// findFunc returns the index of the function containing pc, or -1.
func (t *Table) findFunc(pc uint64) int {
	n := t.h.nfunc
	if pc < t.entry(0) || pc >= t.entry(n) {
		return -1
	}
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t.entry(mid) <= pc {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo - 1
	if i < 0 || pc < t.entry(i) || pc >= t.entry(i+1) {
		return -1
	}
	return i
}

// readFunc decodes the _func record of function i.
func (t *Table) readFunc(i int) (rawFunc, bool) {
	h := t.h
	off := h.funcOff(i)
	if off == noFunc(h) || off >= uint64(len(h.pcln)) {
		return rawFunc{}, false
	}
	rec := h.pcln[off:]
	f := rawFunc{entry: t.entry(i), end: t.entry(i + 1)}
	if f.end < f.entry {
		return rawFunc{}, false
	}
	var fixed uint64
	base := uint64(0)
	if h.ver < fmt118 {
		base = uint64(h.ptrSize) - 4 // entry is a uintptr there
	}
	get := func(o uint64) uint32 {
		v, _ := t.u32(rec, base+o)
		return v
	}
	switch h.ver {
	case fmt120:
		fixed = 44
	case fmt118:
		fixed = 40
	default:
		fixed = base + 40
	}
	if uint64(len(rec)) < fixed {
		return rawFunc{}, false
	}
	f.nameOff = int32(get(4))
	f.pcfile = get(20)
	f.pcln = get(24)
	npcdata := uint64(get(28))
	f.cuOffset = get(32)
	if h.ver >= fmt120 {
		f.startLine = int32(get(36))
	}
	nfuncdata := uint64(rec[fixed-1])
	if npcdata > uint64(len(rec)) {
		return f, true
	}
	if npcdata > pcdataInlTreeIndex {
		f.inlIndex, _ = t.u32(rec, fixed+pcdataInlTreeIndex*4)
	}
	if nfuncdata > funcdataInlTree {
		fd := fixed + npcdata*4
		if h.ver >= fmt118 {
			if v, ok := t.u32(rec, fd+funcdataInlTree*4); ok && v != noTable && t.gofunc != 0 {
				f.inlTree = t.gofunc + uint64(v)
			}
		} else {
			// Pointer-sized funcdata, aligned in memory.
			recAddr := t.addr + h.pclnOff + off
			if h.ptrSize == 8 && (recAddr+fd)&4 != 0 {
				fd += 4
			}
			ps := uint64(h.ptrSize)
			if fd+(funcdataInlTree+1)*ps <= uint64(len(rec)) {
				f.inlTree, _ = t.m.ptr(recAddr+fd+funcdataInlTree*ps, h.ptrSize)
			}
		}
	}
	if f.inlTree == 0 {
		f.inlIndex = 0
	}
	return f, true
}

// cstring returns the NUL-terminated string at off in tab.
func cstring(tab []byte, off uint64) (string, bool) {
	if off >= uint64(len(tab)) {
		return "", false
	}
	b := tab[off:]
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), true
		}
	}
	return "", false
}

// funcName interns the function name at nameOff.
func (t *Table) funcName(nameOff int32) string {
	if s, ok := t.names[nameOff]; ok {
		return s
	}
	s := "?"
	if nameOff >= 0 {
		if v, ok := cstring(t.h.funcnametab, uint64(nameOff)); ok {
			s = v
		}
	}
	t.names[nameOff] = s
	return s
}

// fileName resolves a CU-relative file index to an interned name.
func (t *Table) fileName(cuOffset uint32, fileno int32) string {
	if fileno < 0 {
		return "?"
	}
	idx := uint64(cuOffset) + uint64(fileno)
	off, ok := t.u32(t.h.cutab, idx*4)
	if !ok || off == noTable {
		return "?"
	}
	if s, ok := t.files[off]; ok {
		return s
	}
	s, ok := cstring(t.h.filetab, uint64(off))
	if !ok {
		s = "?"
	}
	t.files[off] = s
	return s
}

// decodeFunc builds the cached state of function i.
func (t *Table) decodeFunc(i int) *funcState {
	rf, ok := t.readFunc(i)
	if !ok {
		return nil
	}
	size := rf.end - rf.entry
	fs := &funcState{rawFunc: rf, name: t.funcName(rf.nameOff)}
	fs.file = decodeRuns(t.h.pctab, rf.pcfile, size, t.h.quantum)
	fs.line = decodeRuns(t.h.pctab, rf.pcln, size, t.h.quantum)
	if rf.inlIndex != 0 {
		fs.inl = decodeRuns(t.h.pctab, rf.inlIndex, size, t.h.quantum)
	}
	return fs
}

// inlineEntrySize is the size of one inline tree record.
func (t *Table) inlineEntrySize() uint64 {
	if t.h.ver >= fmt120 {
		return 16
	}
	return 20
}

// call decodes inline tree entry ix of fs.
func (t *Table) call(fs *funcState, ix int32) *inlCall {
	if c, ok := fs.calls[ix]; ok {
		return c
	}
	c := &inlCall{}
	if fs.calls == nil {
		fs.calls = make(map[int32]*inlCall)
	}
	fs.calls[ix] = c
	if ix < 0 || fs.inlTree == 0 {
		return c
	}
	sz := t.inlineEntrySize()
	b := t.m.read(fs.inlTree+uint64(ix)*sz, int(sz))
	if b == nil {
		return c
	}
	o := t.h.order
	if t.h.ver >= fmt120 {
		// funcID, 3 pad bytes, nameOff, parentPc, startLine.
		c.name = t.funcName(int32(o.Uint32(b[4:])))
		c.parentPc = int32(o.Uint32(b[8:]))
		c.startLine = int32(o.Uint32(b[12:]))
	} else {
		// parent, funcID, pad, file, line, nameOff, parentPc.
		c.name = t.funcName(int32(o.Uint32(b[12:])))
		c.parentPc = int32(o.Uint32(b[16:]))
	}
	c.ok = c.parentPc >= 0 && uint64(c.parentPc) < fs.end-fs.entry
	return c
}

// frames expands pc (inside fs) into its inline frames, innermost first.
func (t *Table) frames(fs *funcState, pc uint64) []Frame {
	off := pc - fs.entry
	ix := int32(-1)
	if fs.inl != nil {
		ix = fs.inl.at(off)
	}
	var out []Frame
	for depth := 0; ; depth++ {
		file := t.fileName(fs.cuOffset, fs.file.at(off))
		line := int(fs.line.at(off))
		if line < 0 {
			line = 0
		}
		var c *inlCall
		if ix >= 0 && depth < maxInlineDepth {
			c = t.call(fs, ix)
		}
		if c == nil || !c.ok {
			return append(out, Frame{Function: fs.name, File: file, Line: line, StartLine: int(fs.startLine)})
		}
		out = append(out, Frame{Function: c.name, File: file, Line: line, StartLine: int(c.startLine)})
		// The caller's position is the source position of the call site,
		// recorded at parentPc; its inline index names the enclosing level.
		off = uint64(c.parentPc)
		ix = fs.inl.at(off)
	}
}
