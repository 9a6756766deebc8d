// Package gopclntab symbolizes addresses in Go ELF binaries from the
// runtime's own pc-line table, which survives stripping and records
// inlining. It supports the table formats of Go 1.16 through 1.26.
package gopclntab

import (
	"debug/elf"
	"errors"
	"fmt"
	"sync"
)

// Frame is one function activation.
type Frame struct {
	Function, File  string
	Line, StartLine int
}

// Cache bounds: decoded functions and memoized per-pc answers. Both are
// reset wholesale when full, which keeps memory bounded without LRU
// bookkeeping on the hot path.
const (
	defaultFuncCache = 4096
	defaultPCCache   = 1 << 14
)

// Table symbolizes pcs of one binary. It is safe for concurrent use.
type Table struct {
	h         *header
	addr      uint64 // virtual address of the pcHeader
	textStart uint64 // runtime.text, base of 1.18+ entry offsets
	gofunc    uint64 // go:func.*, base of 1.18+ funcdata offsets; 0 if unknown

	mu       sync.Mutex
	m        *image
	names    map[int32]string
	files    map[uint32]string
	fcache   map[int]*funcState
	fcap     int
	pcache   []pcEntry
	pcacheOn bool
}

type pcEntry struct {
	pc     uint64
	frames []Frame
}

// Open finds and parses the pclntab of a Go ELF binary. It reads the
// .gopclntab section, or, when that is gone, searches read-only data for
// the table header; the moduledata supplies the text and funcdata bases.
func Open(f *elf.File) (t *Table, err error) {
	if f == nil {
		return nil, errors.New("nil elf file")
	}
	// debug/elf reads lazily and has panicked on hostile input in the
	// past; a malformed binary must come back as an error.
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("malformed elf: %v", r)
		}
	}()
	m := newImage(f)
	addr, _, h, err := locatePclntab(f, m)
	if err != nil {
		return nil, fmt.Errorf("gopclntab: %w", err)
	}
	t = &Table{
		h: h, addr: addr, m: m,
		names:    make(map[int32]string),
		files:    make(map[uint32]string),
		fcache:   make(map[int]*funcState),
		fcap:     defaultFuncCache,
		pcache:   make([]pcEntry, defaultPCCache),
		pcacheOn: true,
	}
	if h.ver >= fmt118 {
		if err := t.resolveBases(f); err != nil {
			return nil, fmt.Errorf("gopclntab: %w", err)
		}
	}
	return t, nil
}

// Version returns the pclntab format version: "1.16" (Go 1.16–1.17),
// "1.18" (1.18–1.19) or "1.20" (1.20 and later).
func (t *Table) Version() string { return t.h.ver.String() }

// Lookup returns the frames at pc (a file virtual address as in the ELF),
// inlined callee first and the physical function last; nil if pc is not
// in any function. For a return address, pass pc-1 to get the call
// site. The returned slice is the caller's to keep.
func (t *Table) Lookup(pc uint64) []Frame {
	if t == nil || t.h == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var slot *pcEntry
	if t.pcacheOn && len(t.pcache) > 0 {
		// Fibonacci hashing spreads nearby pcs across the table.
		slot = &t.pcache[(pc*0x9e3779b97f4a7c15)>>50%uint64(len(t.pcache))]
		if slot.frames != nil && slot.pc == pc {
			return append([]Frame(nil), slot.frames...)
		}
	}
	i := t.findFunc(pc)
	if i < 0 {
		return nil
	}
	fs := t.fcache[i]
	if fs == nil {
		fs = t.decodeFunc(i)
		if fs == nil {
			return nil
		}
		if t.fcap > 0 {
			if len(t.fcache) >= t.fcap {
				clear(t.fcache)
			}
			t.fcache[i] = fs
		}
	}
	fr := t.frames(fs, pc)
	if slot != nil {
		slot.pc, slot.frames = pc, fr
		return append([]Frame(nil), fr...)
	}
	return fr
}

// resolveBases finds runtime.text and go:func.*, which 1.18+ tables
// store offsets against. Each candidate source is checked against the
// table itself, since none is present in every kind of binary.
func (t *Table) resolveBases(f *elf.File) error {
	h := t.h
	md, haveMD := findModuledata(f, t.m, t.addr, h)
	var syms map[string]uint64
	symbols := func() map[string]uint64 {
		if syms == nil {
			syms = map[string]uint64{}
			list, _ := f.Symbols()
			for _, s := range list {
				switch s.Name {
				case "runtime.text", "go:func.*", "go.func.*":
					syms[s.Name] = s.Value
				}
			}
		}
		return syms
	}

	first := h.entryRaw(0)
	textOK := func(text uint64) bool {
		return text != 0 && t.m.isExec(text+first) && t.m.isExec(text+h.entryRaw(h.nfunc)-1)
	}
	var texts []uint64
	if haveMD && md.minpc == md.text+first {
		texts = append(texts, md.text)
	}
	// Go 1.18 to 1.25 keep a relocated copy in the header; 1.26 leaves 0.
	texts = append(texts, h.textStart)
	t.textStart = 0
	for _, c := range texts {
		if textOK(c) {
			t.textStart = c
			break
		}
	}
	if t.textStart == 0 {
		if v := symbols()["runtime.text"]; textOK(v) {
			t.textStart = v
		} else if s := f.Section(".text"); s != nil && textOK(s.Addr) {
			// Right for internal linking; external linkers may put C code
			// first, which only the sources above account for.
			t.textStart = s.Addr
		}
	}
	if t.textStart == 0 {
		return errors.New("cannot determine text start")
	}

	samples := t.inlineSamples(16)
	if len(samples) == 0 {
		return nil // nothing uses go:func.*
	}
	var cands []uint64
	if haveMD {
		cands = append(cands, md.gofunc)
	}
	// Go 1.26 places go:func.* inside the pclntab right after the _func
	// records, aligned to its largest member.
	if end := t.funcRecordsEnd(); end != 0 {
		for _, a := range []uint64{1, 4, 8, 16, 32, 64} {
			cands = append(cands, (end+a-1)&^(a-1))
		}
	}
	for _, c := range cands {
		if c != 0 && t.gofuncOK(c, samples) {
			t.gofunc = c
			return nil
		}
	}
	s := symbols()
	for _, n := range []string{"go:func.*", "go.func.*"} {
		if c := s[n]; c != 0 && t.gofuncOK(c, samples) {
			t.gofunc = c
			return nil
		}
	}
	// Degrade: physical frames with file:line still work without inline
	// information.
	return nil
}

// inlineSample is a function whose inline tree we can check a gofunc
// candidate against.
type inlineSample struct {
	off  uint32 // funcdata offset of the inline tree
	size uint64
}

// inlineSamples collects up to n functions with inline trees, spread
// over the table.
func (t *Table) inlineSamples(n int) []inlineSample {
	h := t.h
	var out []inlineSample
	step := h.nfunc/(n*8) + 1
	for i := 0; i < h.nfunc && len(out) < n; i += step {
		off := h.funcOff(i)
		if off == noFunc(h) || off >= uint64(len(h.pcln)) {
			continue
		}
		rec := h.pcln[off:]
		fixed := uint64(40)
		if h.ver >= fmt120 {
			fixed = 44
		}
		if uint64(len(rec)) < fixed {
			continue
		}
		npcdata, _ := t.u32(rec, 28)
		nfuncdata := uint64(rec[fixed-1])
		if nfuncdata <= funcdataInlTree {
			continue
		}
		v, ok := t.u32(rec, fixed+uint64(npcdata)*4+funcdataInlTree*4)
		if !ok || v == noTable {
			continue
		}
		out = append(out, inlineSample{off: v, size: h.entryRaw(i+1) - h.entryRaw(i)})
	}
	return out
}

// gofuncOK reports whether base makes every sample's first inline tree
// entry well formed: zero padding, a name that starts a string in the
// name table, and a call site inside the function.
func (t *Table) gofuncOK(base uint64, samples []inlineSample) bool {
	sz := t.inlineEntrySize()
	o := t.h.order
	for _, s := range samples {
		b := t.m.read(base+uint64(s.off), int(sz))
		if b == nil {
			return false
		}
		var nameOff, parentPc int32
		if t.h.ver >= fmt120 {
			if b[1] != 0 || b[2] != 0 || b[3] != 0 {
				return false
			}
			nameOff = int32(o.Uint32(b[4:]))
			parentPc = int32(o.Uint32(b[8:]))
		} else {
			if b[3] != 0 {
				return false
			}
			nameOff = int32(o.Uint32(b[12:]))
			parentPc = int32(o.Uint32(b[16:]))
		}
		if nameOff < 0 || uint64(nameOff) >= uint64(len(t.h.funcnametab)) ||
			nameOff > 0 && t.h.funcnametab[nameOff-1] != 0 {
			return false
		}
		if parentPc < 0 || uint64(parentPc) >= s.size {
			return false
		}
	}
	return true
}

// funcRecordsEnd returns the address just past the last _func record
// (with its pcdata and funcdata), or 0.
func (t *Table) funcRecordsEnd() uint64 {
	h := t.h
	fixed := uint64(40)
	if h.ver >= fmt120 {
		fixed = 44
	}
	var end uint64
	for i := 0; i < h.nfunc; i++ {
		off := h.funcOff(i)
		if off == noFunc(h) || off >= uint64(len(h.pcln)) || uint64(len(h.pcln))-off < fixed {
			continue
		}
		rec := h.pcln[off:]
		npcdata, _ := t.u32(rec, 28)
		e := off + fixed + uint64(npcdata)*4 + uint64(rec[fixed-1])*4
		if e > end {
			end = e
		}
	}
	if end == 0 || end > uint64(len(h.pcln)) {
		return 0
	}
	return t.addr + h.pclnOff + end
}

// Entries returns the entry addresses (file virtual addresses) of the
// named functions that the table lists; names it lacks are left out. The
// table survives stripping, so this finds functions with no symbol table.
func (t *Table) Entries(names ...string) map[string]uint64 {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]uint64, len(names))
	if t == nil || t.h == nil {
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < t.h.nfunc && len(out) < len(want); i++ {
		f, ok := t.readFunc(i)
		if !ok {
			continue
		}
		if n := t.funcName(f.nameOff); want[n] {
			out[n] = f.entry
		}
	}
	return out
}
