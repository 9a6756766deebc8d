package gopclntab

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// format is the pclntab layout generation, named after the first Go
// release that wrote it.
type format int

const (
	fmt116 format = iota + 1 // 0xfffffffa: Go 1.16, 1.17
	fmt118                   // 0xfffffff0: Go 1.18, 1.19
	fmt120                   // 0xfffffff1: Go 1.20 and later
)

const (
	magic116 = 0xfffffffa
	magic118 = 0xfffffff0
	magic120 = 0xfffffff1

	// Sanity caps so hostile headers cannot make us allocate or loop
	// unboundedly.
	maxFuncs = 1 << 26
)

var errNoTable = errors.New("no pclntab found")

func (v format) String() string {
	switch v {
	case fmt116:
		return "1.16"
	case fmt118:
		return "1.18"
	case fmt120:
		return "1.20"
	}
	return "unknown"
}

// header is the decoded pcHeader plus the sub-tables it points at.
type header struct {
	ver     format
	order   binary.ByteOrder
	quantum uint32
	ptrSize int
	nfunc   int
	// textStart is the header's copy of runtime.text (1.18 to 1.25);
	// zero when absent.
	textStart   uint64
	funcnameOff uint64
	pclnOff     uint64

	funcnametab []byte
	cutab       []byte
	filetab     []byte
	pctab       []byte
	// pcln holds the functab followed by the _func records; funcoff
	// values are relative to its start.
	pcln []byte
}

func magicFormat(m uint32) format {
	switch m {
	case magic116:
		return fmt116
	case magic118:
		return fmt118
	case magic120:
		return fmt120
	}
	return 0
}

// parseHeader validates a pcHeader at the start of data; data may run
// past the end of the table.
func parseHeader(data []byte, prefer binary.ByteOrder) (*header, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("pclntab header: %w", errTruncated)
	}
	h := &header{}
	orders := []binary.ByteOrder{binary.LittleEndian, binary.BigEndian}
	if prefer == binary.BigEndian {
		orders[0], orders[1] = orders[1], orders[0]
	}
	for _, o := range orders {
		if v := magicFormat(o.Uint32(data)); v != 0 {
			h.ver, h.order = v, o
			break
		}
	}
	if h.ver == 0 {
		return nil, fmt.Errorf("unsupported pclntab magic %#x", binary.LittleEndian.Uint32(data))
	}
	if data[4] != 0 || data[5] != 0 {
		return nil, errors.New("pclntab header: nonzero padding")
	}
	switch data[6] {
	case 1, 2, 4:
		h.quantum = uint32(data[6])
	default:
		return nil, fmt.Errorf("pclntab header: bad pc quantum %d", data[6])
	}
	switch data[7] {
	case 4, 8:
		h.ptrSize = int(data[7])
	default:
		return nil, fmt.Errorf("pclntab header: bad pointer size %d", data[7])
	}
	words := 7
	if h.ver >= fmt118 {
		words = 8 // the textStart slot
	}
	if len(data) < 8+words*h.ptrSize {
		return nil, fmt.Errorf("pclntab header: %w", errTruncated)
	}
	word := func(i int) uint64 {
		b := data[8+i*h.ptrSize:]
		if h.ptrSize == 4 {
			return uint64(h.order.Uint32(b))
		}
		return h.order.Uint64(b)
	}
	nfunc := word(0)
	if nfunc == 0 || nfunc > maxFuncs {
		return nil, fmt.Errorf("pclntab header: implausible function count %d", nfunc)
	}
	h.nfunc = int(nfunc)
	next := 2
	if h.ver >= fmt118 {
		h.textStart = word(2)
		next = 3
	}
	offs := [5]uint64{}
	for i := range offs {
		offs[i] = word(next + i)
	}
	// The linker lays the tables out in header order; anything else is
	// not a pclntab we understand.
	prev := uint64(8 + words*h.ptrSize)
	for _, o := range offs {
		if o < prev || o > uint64(len(data)) {
			return nil, errors.New("pclntab header: table offsets out of order or range")
		}
		prev = o
	}
	h.funcnameOff, h.pclnOff = offs[0], offs[4]
	h.funcnametab = data[offs[0]:offs[1]]
	h.cutab = data[offs[1]:offs[2]]
	h.filetab = data[offs[2]:offs[3]]
	h.pctab = data[offs[3]:offs[4]]
	h.pcln = data[offs[4]:]
	need := (uint64(h.nfunc)*2 + 1) * uint64(h.ftabField())
	if need > uint64(len(h.pcln)) {
		return nil, fmt.Errorf("pclntab functab: %w", errTruncated)
	}
	if err := h.checkFunctab(); err != nil {
		return nil, err
	}
	return h, nil
}

var errTruncated = errors.New("truncated")

// ftabField is the size of one functab field.
func (h *header) ftabField() int {
	if h.ver >= fmt118 {
		return 4
	}
	return h.ptrSize
}

// field reads functab field i (entry of function i/2 or its funcoff).
func (h *header) field(i int) uint64 {
	sz := h.ftabField()
	off := i * sz
	if off < 0 || off+sz > len(h.pcln) {
		return 0
	}
	if sz == 4 {
		return uint64(h.order.Uint32(h.pcln[off:]))
	}
	return h.order.Uint64(h.pcln[off:])
}

// entryRaw is function i's entry as stored: an offset from runtime.text
// for 1.18+, an absolute address before. i == nfunc gives the end.
func (h *header) entryRaw(i int) uint64 { return h.field(2 * i) }

func (h *header) funcOff(i int) uint64 { return h.field(2*i + 1) }

// checkFunctab spot-checks that the functab is sorted and points inside
// the table, which rejects most false magic matches cheaply.
func (h *header) checkFunctab() error {
	check := func(i int) error {
		if i < 0 || i >= h.nfunc {
			return nil
		}
		if h.entryRaw(i) > h.entryRaw(i+1) {
			return errors.New("pclntab functab: not sorted")
		}
		if off := h.funcOff(i); off != noFunc(h) && off >= uint64(len(h.pcln)) {
			return errors.New("pclntab functab: func record out of range")
		}
		return nil
	}
	for i := 0; i < 8; i++ {
		if err := check(i); err != nil {
			return err
		}
		if err := check(h.nfunc - 1 - i); err != nil {
			return err
		}
	}
	return nil
}

// noFunc is the funcoff marking a hole in the functab.
func noFunc(h *header) uint64 {
	if h.ftabField() == 4 {
		return 0xffffffff
	}
	if h.ptrSize == 4 {
		return 0xffffffff
	}
	return ^uint64(0)
}
