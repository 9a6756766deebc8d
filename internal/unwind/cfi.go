package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errShort is returned for any read past the end of the data: every
// reader method checks bounds, so corrupt input ends in an error.
var errShort = errors.New("truncated CFI data")

// reader is a bounds-checked cursor. After the first failed read it
// stays failed and returns zeros, so callers check err once per record.
type reader struct {
	b     []byte
	off   int
	order binary.ByteOrder
	err   error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil || n > uint64(r.left()) {
		r.fail(errShort)
		return nil
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

func (r *reader) u8() uint8 {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return r.order.Uint16(b)
}

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return r.order.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return r.order.Uint64(b)
}

func (r *reader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		b := r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(b&0x7f) << shift
		}
		if b&0x80 == 0 {
			return v
		}
		if shift > 70 { // longer than any real value: garbage
			r.fail(errors.New("LEB128 too long"))
			return 0
		}
	}
}

func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	var b uint8
	for {
		b = r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= int64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if shift > 70 {
			r.fail(errors.New("LEB128 too long"))
			return 0
		}
	}
	if shift < 64 && b&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

func (r *reader) cstring() string {
	for i := r.off; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.fail(errShort)
	return ""
}

// Pointer encodings (DW_EH_PE_*), from the LSB "Exception Frames" spec.
const (
	peAbsptr   = 0x00
	peULEB128  = 0x01
	peUdata2   = 0x02
	peUdata4   = 0x03
	peUdata8   = 0x04
	peSLEB128  = 0x09
	peSdata2   = 0x0a
	peSdata4   = 0x0b
	peSdata8   = 0x0c
	pePCRel    = 0x10
	peTextRel  = 0x20
	peDataRel  = 0x30
	peFuncRel  = 0x40
	peAligned  = 0x50
	peIndirect = 0x80
	peOmit     = 0xff
)

// encoding tells how to read encoded pointers in one section.
type encoding struct {
	secAddr    uint64 // vaddr of the section's first byte, for pcrel
	text, data uint64 // bases for textrel and datarel (.text, .got)
	ptrSize    int
	// deref reads a pointer-sized word at a vaddr, for indirect
	// pointers; nil when the file contents are not at hand.
	deref func(addr uint64) (uint64, bool)
}

// readValue reads the value part of a pointer encoding (low 4 bits).
func (r *reader) readValue(enc byte, ptrSize int) uint64 {
	switch enc & 0x0f {
	case peAbsptr:
		if ptrSize == 4 {
			return uint64(r.u32())
		}
		return r.u64()
	case peULEB128:
		return r.uleb()
	case peUdata2:
		return uint64(r.u16())
	case peUdata4:
		return uint64(r.u32())
	case peUdata8:
		return r.u64()
	case peSLEB128:
		return uint64(r.sleb())
	case peSdata2:
		return uint64(int64(int16(r.u16())))
	case peSdata4:
		return uint64(int64(int32(r.u32())))
	case peSdata8:
		return r.u64()
	}
	r.fail(fmt.Errorf("unknown pointer encoding %#x", enc))
	return 0
}

// readPointer reads an encoded pointer; funcBase is the start of the
// current function for funcrel (0 when not inside an FDE).
func (r *reader) readPointer(enc byte, e *encoding, funcBase uint64) uint64 {
	if enc == peOmit {
		return 0
	}
	var base uint64
	switch enc & 0x70 {
	case 0:
	case pePCRel:
		base = e.secAddr + uint64(r.off)
	case peTextRel:
		base = e.text
	case peDataRel:
		base = e.data
	case peFuncRel:
		base = funcBase
	case peAligned:
		if a := e.ptrSize; a > 0 {
			pad := (a - r.off%a) % a
			r.bytes(uint64(pad))
		}
	default:
		r.fail(fmt.Errorf("unknown pointer application %#x", enc))
		return 0
	}
	v := base + r.readValue(enc, e.ptrSize)
	if enc&peIndirect != 0 && r.err == nil {
		if e.deref == nil {
			r.fail(errors.New("indirect pointer without file contents"))
			return 0
		}
		var ok bool
		if v, ok = e.deref(v); !ok {
			r.fail(errors.New("indirect pointer outside the file"))
			return 0
		}
	}
	return v
}

// cie is a parsed Common Information Entry.
type cie struct {
	codeAlign uint64
	dataAlign int64
	raReg     uint64
	fdeEnc    byte // pointer encoding of FDE addresses
	hasAug    bool // 'z': FDEs carry an augmentation length
	signal    bool // 'S': frames of this CIE are signal frames
	addrSize  int
	initial   []byte // initial instructions
}

// fde is a parsed Frame Description Entry with its CIE.
type fde struct {
	cie        *cie
	begin, end uint64
	insns      []byte
}

// sectionKind selects the .eh_frame or .debug_frame variant of CFI.
type sectionKind uint8

const (
	ehFrame sectionKind = iota
	debugFrame
)

// cfiParser walks one .eh_frame or .debug_frame section.
type cfiParser struct {
	data  []byte
	kind  sectionKind
	order binary.ByteOrder
	enc   encoding
	cies  map[uint64]*cie // by section offset; nil value = bad CIE
	errs  int             // records that could not be parsed
}

func newCFIParser(data []byte, kind sectionKind, order binary.ByteOrder, enc encoding) *cfiParser {
	if enc.ptrSize == 0 {
		enc.ptrSize = 8
	}
	return &cfiParser{data: data, kind: kind, order: order, enc: enc, cies: map[uint64]*cie{}}
}

// record reads the length header at off: the body, its offset, whether
// it uses the 64-bit DWARF format and the offset of the next record.
func (p *cfiParser) record(off int) (body []byte, bodyOff int, is64 bool, next int, err error) {
	r := &reader{b: p.data, off: off, order: p.order}
	n := uint64(r.u32())
	if n == 0xffffffff {
		n = r.u64()
		is64 = true
	}
	if r.err != nil {
		return nil, 0, false, 0, r.err
	}
	bodyOff = r.off
	body = r.bytes(n)
	if r.err != nil {
		return nil, 0, false, 0, r.err
	}
	return body, bodyOff, is64, r.off, nil
}

// fdes parses every FDE in the section. FDEs whose CIE or header is
// bad are counted in p.errs and, when their address range could still be
// read, returned with bad set so the caller can mark them unsupported.
func (p *cfiParser) fdes(visit func(f *fde, bad bool)) error {
	for off := 0; off < len(p.data); {
		body, bodyOff, is64, next, err := p.record(off)
		if err != nil {
			return fmt.Errorf("CFI record at %#x: %w", off, err)
		}
		if len(body) == 0 && p.kind == ehFrame {
			break // zero terminator
		}
		r := &reader{b: p.data[:bodyOff+len(body)], off: bodyOff, order: p.order}
		idOff := r.off
		var id uint64
		if is64 && p.kind == debugFrame {
			id = r.u64()
		} else {
			id = uint64(r.u32())
		}
		if r.err != nil {
			p.errs++
			off = next
			continue
		}
		if p.isCIE(id, is64) {
			off = next
			continue
		}
		var cieOff uint64
		if p.kind == ehFrame {
			cieOff = uint64(idOff) - id // relative to the CIE pointer itself
		} else {
			cieOff = id
		}
		c := p.cie(cieOff)
		if c == nil {
			p.errs++
			off = next
			continue
		}
		f, ok := p.parseFDE(r, c)
		if !ok {
			p.errs++
		}
		if f != nil {
			visit(f, !ok)
		}
		off = next
	}
	return nil
}

func (p *cfiParser) isCIE(id uint64, is64 bool) bool {
	if p.kind == ehFrame {
		return id == 0
	}
	if is64 {
		return id == 0xffffffffffffffff
	}
	return id == 0xffffffff
}

// cie returns the CIE at a section offset, parsing it once; nil if bad.
func (p *cfiParser) cie(off uint64) *cie {
	if c, ok := p.cies[off]; ok {
		return c
	}
	c := p.parseCIE(off)
	p.cies[off] = c
	return c
}

func (p *cfiParser) parseCIE(off uint64) *cie {
	if off >= uint64(len(p.data)) {
		return nil
	}
	body, bodyOff, is64, _, err := p.record(int(off))
	if err != nil || len(body) == 0 {
		return nil
	}
	r := &reader{b: p.data[:bodyOff+len(body)], off: bodyOff, order: p.order}
	var id uint64
	if is64 && p.kind == debugFrame {
		id = r.u64()
	} else {
		id = uint64(r.u32())
	}
	if r.err != nil || !p.isCIE(id, is64) {
		return nil
	}
	c := &cie{addrSize: p.enc.ptrSize, fdeEnc: peAbsptr}
	version := r.u8()
	if version != 1 && version != 3 && version != 4 {
		return nil
	}
	aug := r.cstring()
	if version == 4 {
		c.addrSize = int(r.u8())
		if seg := r.u8(); seg != 0 || (c.addrSize != 4 && c.addrSize != 8) {
			return nil
		}
	}
	if aug == "eh" { // old GCC: a pointer to exception data comes first
		r.bytes(uint64(c.addrSize))
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.raReg = uint64(r.u8())
	} else {
		c.raReg = r.uleb()
	}
	if r.err != nil {
		return nil
	}
	switch {
	case aug == "", aug == "eh":
	case aug[0] == 'z':
		c.hasAug = true
		n := r.uleb()
		augData := r.bytes(n)
		if r.err != nil {
			return nil
		}
		ar := &reader{b: augData, order: p.order}
		// Offsets in augData are relative to the section for pcrel.
		enc := p.enc
		enc.secAddr += uint64(r.off) - n
		for _, ch := range aug[1:] {
			switch ch {
			case 'R':
				c.fdeEnc = ar.u8()
			case 'P':
				pe := ar.u8()
				// The personality routine is not needed for unwinding.
				ar.readPointer(pe&^peIndirect, &enc, 0)
			case 'L':
				ar.u8() // LSDA encoding; the LSDA pointer is in each FDE
			case 'S':
				c.signal = true
			}
			// Unknown letters (B, G, ...) are skipped: the 'z' length
			// tells where the instructions start.
			if ar.err != nil {
				return nil
			}
		}
	default:
		return nil // unknown augmentation without 'z': layout unknown
	}
	c.initial = r.b[r.off:]
	if r.err != nil {
		return nil
	}
	return c
}

// parseFDE reads an FDE body after its CIE pointer. It returns the FDE
// and false when the address range was read but the rest is bad.
func (p *cfiParser) parseFDE(r *reader, c *cie) (*fde, bool) {
	enc := c.fdeEnc
	if p.kind == debugFrame && !c.hasAug {
		enc = peAbsptr
		if c.addrSize == 4 {
			enc = peUdata4
		}
	}
	e := p.enc
	e.ptrSize = c.addrSize
	begin := r.readPointer(enc, &e, 0)
	// The range is a plain length: only the value format applies.
	length := r.readValue(enc&0x0f, c.addrSize)
	if r.err != nil {
		return nil, false
	}
	f := &fde{cie: c, begin: begin, end: begin + length}
	if f.end < f.begin {
		return nil, false
	}
	if c.hasAug {
		n := r.uleb()
		r.bytes(n) // LSDA pointer: not needed
	}
	if r.err != nil {
		return f, false
	}
	f.insns = r.b[r.off:]
	return f, true
}
