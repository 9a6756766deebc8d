package gopclntab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
)

// locatePclntab returns the pclntab's address and bytes (which may run
// past its end) and its parsed header.
func locatePclntab(f *elf.File, m *image) (uint64, []byte, *header, error) {
	var firstErr error
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		s := f.Section(name)
		if s == nil {
			continue
		}
		r := m.find(s.Addr)
		if r == nil || r.addr != s.Addr {
			continue
		}
		d := r.load()
		h, err := parseHeader(d, m.order)
		if err == nil {
			return s.Addr, d, h, nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("section %s: %w", name, err)
		}
	}
	// Stripped or externally linked PIE binaries can fold the table into
	// .rodata or .data.rel.ro: look for the header by its magic. Non-code
	// regions first, since that is where the linker puts it.
	regs := append([]*region(nil), m.regions...)
	sort.SliceStable(regs, func(i, j int) bool { return !regs[i].exec && regs[j].exec })
	for _, r := range regs {
		d := r.load()
		if addr, data, h, ok := scanMagic(r.addr, d, m.order); ok {
			return addr, data, h, nil
		}
	}
	if firstErr != nil {
		return 0, nil, nil, firstErr
	}
	return 0, nil, nil, errNoTable
}

// scanMagic searches d (mapped at base) for a valid pcHeader.
func scanMagic(base uint64, d []byte, order binary.ByteOrder) (uint64, []byte, *header, bool) {
	for _, magic := range []uint32{magic120, magic118, magic116} {
		for _, o := range []binary.ByteOrder{order, otherOrder(order)} {
			var pat [6]byte
			o.PutUint32(pat[:], magic)
			for i := 0; i+len(pat) <= len(d); {
				j := bytes.Index(d[i:], pat[:])
				if j < 0 {
					break
				}
				at := i + j
				i = at + 1
				if at+8 > len(d) {
					break
				}
				ps := uint64(d[at+7])
				if ps != 4 && ps != 8 || (base+uint64(at))%ps != 0 {
					continue
				}
				if h, err := parseHeader(d[at:], o); err == nil && h.order == o {
					return base + uint64(at), d[at:], h, true
				}
			}
		}
	}
	return 0, nil, nil, false
}

func otherOrder(o binary.ByteOrder) binary.ByteOrder {
	if o == binary.BigEndian {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// moduledata word indices (in pointer-sized words) of the fields we use.
// The prefix up to text is the same in every supported release.
const (
	mdPcHeader    = 0
	mdFuncnametab = 1
	mdPclntable   = 13
	mdFtab        = 16
	mdFtabLen     = 17
	mdMinpc       = 20
	mdText        = 22
	mdGofunc118   = 38 // before covctrs was added
	mdGofunc120   = 40
)

// moduledata holds the fields of runtime.firstmoduledata we rely on.
type moduledata struct {
	addr   uint64
	text   uint64
	minpc  uint64
	gofunc uint64
}

// findModuledata locates the moduledata describing the pclntab at
// pclnAddr: the .go.module section (Go 1.26+), or a scan of the writable
// data for a struct whose first field points at the pclntab header.
func findModuledata(f *elf.File, m *image, pclnAddr uint64, h *header) (*moduledata, bool) {
	ps := h.ptrSize
	if s := f.Section(".go.module"); s != nil {
		if md, ok := readModuledata(m, s.Addr, pclnAddr, h); ok {
			return md, true
		}
	}
	var want [8]byte
	if ps == 4 {
		m.order.PutUint32(want[:], uint32(pclnAddr))
	} else {
		m.order.PutUint64(want[:], pclnAddr)
	}
	for _, r := range m.regions {
		if !r.write || r.exec {
			continue
		}
		d := r.load()
		for i := 0; i+ps <= len(d); {
			j := bytes.Index(d[i:], want[:ps])
			if j < 0 {
				break
			}
			at := i + j
			i = at + 1
			a := r.addr + uint64(at)
			if a%uint64(ps) != 0 {
				continue
			}
			if md, ok := readModuledata(m, a, pclnAddr, h); ok {
				return md, true
			}
		}
	}
	// PIE data may hold zero until relocated: look for relocations that
	// produce the header address instead.
	var cands []uint64
	for off, add := range m.relativeRelocs() {
		if add == pclnAddr {
			cands = append(cands, off)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i] < cands[j] })
	for _, a := range cands {
		if md, ok := readModuledata(m, a, pclnAddr, h); ok {
			return md, true
		}
	}
	return nil, false
}

// readModuledata verifies that addr holds a moduledata for this pclntab.
func readModuledata(m *image, addr, pclnAddr uint64, h *header) (*moduledata, bool) {
	ps := h.ptrSize
	w := func(i int) (uint64, bool) { return m.ptr(addr+uint64(i*ps), ps) }
	eq := func(i int, want uint64) bool {
		v, ok := w(i)
		return ok && v == want
	}
	if !eq(mdPcHeader, pclnAddr) ||
		!eq(mdFuncnametab, pclnAddr+h.funcnameOff) ||
		!eq(mdPclntable, pclnAddr+h.pclnOff) ||
		!eq(mdFtab, pclnAddr+h.pclnOff) ||
		!eq(mdFtabLen, uint64(h.nfunc)+1) {
		return nil, false
	}
	md := &moduledata{addr: addr}
	md.text, _ = w(mdText)
	md.minpc, _ = w(mdMinpc)
	gi := mdGofunc120
	if h.ver < fmt120 {
		gi = mdGofunc118
	}
	md.gofunc, _ = w(gi)
	return md, true
}
