package gopclntab

import (
	"debug/elf"
	"encoding/binary"
	"io"
)

// maxRegion caps how much of one section or segment we read, so a
// header claiming a huge size cannot exhaust memory.
const maxRegion = 1 << 30

// region is one loaded address range of the file.
type region struct {
	addr, size uint64
	exec       bool
	write      bool
	name       string
	open       func() io.ReaderAt
	loaded     bool
	data       []byte
}

// image reads the file by virtual address, the way the loaded program
// would see it, including PIE relative relocations.
type image struct {
	f       *elf.File
	order   binary.ByteOrder
	regions []*region
	relocs  map[uint64]uint64 // target vaddr -> addend of RELATIVE relocs
	relDone bool
}

func newImage(f *elf.File) *image {
	m := &image{f: f, order: f.ByteOrder}
	if m.order == nil {
		m.order = binary.LittleEndian
	}
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size == 0 || s.Flags&elf.SHF_COMPRESSED != 0 {
			continue
		}
		s := s
		m.regions = append(m.regions, &region{
			addr: s.Addr, size: s.Size, name: s.Name,
			exec:  s.Flags&elf.SHF_EXECINSTR != 0,
			write: s.Flags&elf.SHF_WRITE != 0,
			open:  func() io.ReaderAt { return s },
		})
	}
	if len(m.regions) == 0 {
		// No section headers (e.g. sstrip'ed): fall back to segments.
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || p.Filesz == 0 {
				continue
			}
			p := p
			m.regions = append(m.regions, &region{
				addr: p.Vaddr, size: p.Filesz,
				exec:  p.Flags&elf.PF_X != 0,
				write: p.Flags&elf.PF_W != 0,
				open:  func() io.ReaderAt { return p },
			})
		}
	}
	return m
}

// load reads a region's bytes once; failures leave it empty.
func (r *region) load() []byte {
	if r.loaded {
		return r.data
	}
	r.loaded = true
	if r.size > maxRegion {
		return nil
	}
	// ReadAll over a bounded reader never allocates more than the file
	// really holds, whatever size the header claims.
	sr := io.NewSectionReader(r.open(), 0, int64(r.size))
	b, err := io.ReadAll(sr)
	if err != nil && len(b) == 0 {
		return nil
	}
	r.data = b
	return b
}

func (m *image) find(addr uint64) *region {
	for _, r := range m.regions {
		if addr >= r.addr && addr-r.addr < r.size {
			return r
		}
	}
	return nil
}

// read returns n bytes at addr, or nil when any of them is unmapped.
func (m *image) read(addr uint64, n int) []byte {
	r := m.find(addr)
	if r == nil || n < 0 {
		return nil
	}
	d := r.load()
	off := addr - r.addr
	if off > uint64(len(d)) || uint64(n) > uint64(len(d))-off {
		return nil
	}
	return d[off : off+uint64(n)]
}

// ptr reads a pointer-sized word at addr, consulting RELATIVE
// relocations when the file holds zero there (PIE data that only the
// dynamic loader fills in).
func (m *image) ptr(addr uint64, size int) (uint64, bool) {
	b := m.read(addr, size)
	if b == nil {
		return 0, false
	}
	var v uint64
	if size == 4 {
		v = uint64(m.order.Uint32(b))
	} else {
		v = m.order.Uint64(b)
	}
	if v == 0 {
		if a, ok := m.relativeRelocs()[addr]; ok {
			return a, true
		}
	}
	return v, true
}

// relativeRelocs indexes R_*_RELATIVE entries of the dynamic RELA
// sections by target address.
func (m *image) relativeRelocs() map[uint64]uint64 {
	if m.relDone {
		return m.relocs
	}
	m.relDone = true
	var relType uint32
	switch m.f.Machine {
	case elf.EM_X86_64:
		relType = uint32(elf.R_X86_64_RELATIVE)
	case elf.EM_AARCH64:
		relType = uint32(elf.R_AARCH64_RELATIVE)
	default:
		return nil
	}
	if m.f.Class != elf.ELFCLASS64 {
		return nil
	}
	m.relocs = make(map[uint64]uint64)
	for _, s := range m.f.Sections {
		if s.Type != elf.SHT_RELA || s.Size > maxRegion {
			continue
		}
		b, err := io.ReadAll(io.NewSectionReader(s, 0, int64(s.Size)))
		if err != nil && len(b) == 0 {
			continue
		}
		for i := 0; i+24 <= len(b); i += 24 {
			off := m.order.Uint64(b[i:])
			info := m.order.Uint64(b[i+8:])
			add := m.order.Uint64(b[i+16:])
			if uint32(info) == relType {
				m.relocs[off] = add
			}
		}
	}
	return m.relocs
}

// isExec reports whether addr lies in executable code.
func (m *image) isExec(addr uint64) bool {
	if r := m.find(addr); r != nil {
		return r.exec
	}
	// Code may sit in a region we skipped; trust segments then.
	for _, p := range m.f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr-p.Vaddr < p.Memsz {
			return true
		}
	}
	return false
}
