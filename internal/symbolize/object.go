package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"blockprof/internal/elfinfo"
)

// maxCachedAddrs bounds the per-file cache of resolved addresses.
const maxCachedAddrs = 1 << 20

// object is one parsed ELF file (plus its separate debug file), shared by
// every mapping of it in every process.
type object struct {
	ef     *elf.File
	closer io.Closer

	buildID   string // GNU build ID in hex, else the Go build ID
	gnuID     string // GNU build ID only, for the debug file search
	debuglink string // .gnu_debuglink file name
	debugCRC  uint32
	isGo      bool
	loads     []segment

	debug       *elf.File // separate debug file, nil if none
	debugCloser io.Closer

	hasFuncs, hasLines, hasInline bool

	mu       sync.Mutex // guards the lazily loaded tables below
	symsDone bool
	syms     *symtab
	dwDone   bool
	dw       *dwarfIndex
	goDone   bool
	goTab    goTable

	cacheMu sync.RWMutex
	cache   map[uint64][]Frame
}

// segment is a PT_LOAD program header.
type segment struct {
	vaddr, off, filesz, memsz uint64
	exec                      bool
}

// noRecover lets fuzzing see panics that recover would hide.
var noRecover = false

// recovered turns a parser panic on bad input into an error.
func recovered(err *error) {
	r := recover()
	if r != nil && noRecover {
		panic(r)
	}
	if r != nil {
		*err = fmt.Errorf("malformed file: %v", r)
	}
}

// ignorePanic is deferred around lazy loads: bad tables cost frames only.
func ignorePanic() {
	if r := recover(); r != nil && noRecover {
		panic(r)
	}
}

// newObject parses the ELF headers of r; r is closed by object.close.
func newObject(r io.ReaderAt, c io.Closer) (o *object, err error) {
	defer recovered(&err)
	defer func() {
		if err != nil {
			o = nil
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	o = &object{ef: ef, closer: c}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		o.loads = append(o.loads, segment{
			vaddr: p.Vaddr, off: p.Off, filesz: p.Filesz, memsz: p.Memsz,
			exec: p.Flags&elf.PF_X != 0,
		})
	}
	gnu, goID := elfinfo.BuildIDs(ef)
	o.gnuID = gnu
	o.buildID = gnu
	if o.buildID == "" {
		o.buildID = goID
	}
	o.debuglink, o.debugCRC = readDebuglink(ef)
	o.isGo = goID != "" || elfinfo.IsGo(ef)
	return o, nil
}

func (o *object) close() error {
	var errs []error
	if o.debugCloser != nil {
		errs = append(errs, o.debugCloser.Close())
	}
	if o.closer != nil {
		errs = append(errs, o.closer.Close())
	}
	return errors.Join(errs...)
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// readDebuglink returns the file name and CRC32 of .gnu_debuglink.
func readDebuglink(ef *elf.File) (string, uint32) {
	s := ef.Section(".gnu_debuglink")
	if s == nil || s.Type == elf.SHT_NOBITS || s.Size > 4096 {
		return "", 0
	}
	data, err := s.Data()
	if err != nil {
		return "", 0
	}
	n := 0
	for n < len(data) && data[n] != 0 {
		n++
	}
	crcOff := align4(uint64(n + 1))
	if n == 0 || crcOff+4 > uint64(len(data)) {
		return "", 0
	}
	var bo binary.ByteOrder = ef.ByteOrder
	return string(data[:n]), bo.Uint32(data[crcOff:])
}

// hasData reports whether f has a section name with contents.
func hasData(f *elf.File, name string) bool {
	if f == nil {
		return false
	}
	s := f.Section(name)
	return s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0
}

// setFlags decides what this file can provide from the sections present,
// without parsing them (except the pclntab header). It runs before o is
// shared.
func (o *object) setFlags() {
	for _, f := range []*elf.File{o.debug, o.ef} {
		if hasData(f, ".symtab") || hasData(f, ".dynsym") {
			o.hasFuncs = true
		}
		if hasData(f, ".debug_info") || hasData(f, ".zdebug_info") {
			o.hasFuncs, o.hasLines, o.hasInline = true, true, true
		}
	}
	if o.isGo && o.goTable() != nil {
		o.hasFuncs, o.hasLines, o.hasInline = true, true, true
	}
}

// fileAddr maps an address of a mapping to the link-time virtual address:
// the file offset it maps, moved by the PT_LOAD segment holding that offset.
func (o *object) fileAddr(m *Mapping, addr uint64) (uint64, bool) {
	off := addr - m.Start + m.Offset
	if len(o.loads) == 0 {
		return off, true
	}
	// Page alignment can make segments share a page in the file; the
	// mapping is executable, so prefer the executable segment.
	for pass := 0; pass < 2; pass++ {
		for _, l := range o.loads {
			if l.exec != (pass == 0) {
				continue
			}
			if off >= l.off && off-l.off < l.filesz {
				return off - l.off + l.vaddr, true
			}
		}
	}
	return 0, false
}

// lookup resolves a link-time address; the result is shared, read-only.
func (o *object) lookup(pc uint64) []Frame {
	o.cacheMu.RLock()
	fr, ok := o.cache[pc]
	o.cacheMu.RUnlock()
	if ok {
		return fr
	}
	fr = o.resolve(pc)
	o.cacheMu.Lock()
	if o.cache == nil {
		o.cache = map[uint64][]Frame{}
	}
	if len(o.cache) < maxCachedAddrs {
		o.cache[pc] = fr
	}
	o.cacheMu.Unlock()
	return fr
}

func (o *object) resolve(pc uint64) (frames []Frame) {
	o.mu.Lock()
	defer o.mu.Unlock()
	defer func() {
		// A parser bug on odd input must cost frames, not the process.
		if r := recover(); r != nil {
			if noRecover {
				panic(r)
			}
			frames = nil
		}
	}()
	if o.isGo {
		if t := o.goTable(); t != nil {
			if fr := t.lookup(pc); len(fr) > 0 {
				return fr
			}
		}
	}
	var sym *symbol
	if st := o.symtab(); st != nil {
		sym = st.lookup(pc)
	}
	if dw := o.dwarf(); dw != nil {
		if fr := dw.lookup(pc); len(fr) > 0 {
			// DWARF may know lines but not the function (no subprogram
			// entry, e.g. assembly): name it from the symbol table.
			last := &fr[len(fr)-1]
			if last.Function == "" {
				if sym == nil {
					if len(fr) == 1 && last.File == "" {
						return nil
					}
				} else {
					last.Function, last.SystemName = o.syms.demangled(sym), sym.name
				}
			}
			return fr
		}
	}
	if sym == nil {
		return nil
	}
	return []Frame{{Function: o.syms.demangled(sym), SystemName: sym.name}}
}

func (o *object) symtab() *symtab {
	if !o.symsDone {
		o.symsDone = true
		func() {
			defer ignorePanic()
			o.syms = loadSymtab(o.debug, o.ef)
		}()
	}
	return o.syms
}

func (o *object) dwarf() *dwarfIndex {
	if !o.dwDone {
		o.dwDone = true
		func() {
			defer ignorePanic()
			for _, f := range []*elf.File{o.debug, o.ef} {
				if f == nil {
					continue
				}
				if d, err := f.DWARF(); err == nil {
					if idx := newDwarfIndex(d); idx != nil {
						o.dw = idx
						return
					}
				}
			}
		}()
	}
	return o.dw
}

func (o *object) goTable() goTable {
	if !o.goDone {
		o.goDone = true
		func() {
			defer ignorePanic()
			o.goTab = openGoTable(o.ef)
		}()
	}
	return o.goTab
}
