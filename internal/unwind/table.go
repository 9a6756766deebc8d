// Package unwind turns the DWARF call frame information of an x86-64 ELF
// file (.eh_frame, else .debug_frame) into a compact sorted table that an
// in-kernel unwinder can search: for each address range, how to find the
// canonical frame address (CFA) and the caller's rbp. The return address
// is always at CFA-8 on x86-64; rows where the CFI says otherwise are
// marked unsupported, never guessed.
package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
)

// CFAKind says how the CFA is computed at a PC.
type CFAKind uint8

const (
	// CFANone: no CFI covers the PC (between FDEs); an unwinder may
	// fall back to frame pointers.
	CFANone CFAKind = iota
	CFARSP          // CFA = rsp + CFAOff
	CFARBP          // CFA = rbp + CFAOff
	// CFAPLT is the lazy-binding PLT rule:
	// CFA = rsp + CFAOff + ((rip&15) >= 11 ? 8 : 0). Each 16-byte PLT entry
	// pushes its relocation index at offset 6 (a 5-byte push), so from
	// offset 11 on rsp is 8 lower.
	CFAPLT
	// CFAEnd: the return address is undefined, the outermost frame
	// (_start, thread entry): stop unwinding.
	CFAEnd
	// CFAUnsupported: CFI exists but cannot be expressed here (other
	// base registers, general expressions, return address elsewhere).
	CFAUnsupported
)

func (k CFAKind) String() string {
	switch k {
	case CFANone:
		return "none"
	case CFARSP:
		return "rsp"
	case CFARBP:
		return "rbp"
	case CFAPLT:
		return "plt"
	case CFAEnd:
		return "end"
	case CFAUnsupported:
		return "unsupported"
	}
	return fmt.Sprintf("CFAKind(%d)", uint8(k))
}

// RBPKind says how the caller's rbp is recovered.
type RBPKind uint8

const (
	RBPSame        RBPKind = iota // rbp is unchanged
	RBPOffset                     // saved at CFA + RBPOff
	RBPUnsupported                // anything else (register, expression, undefined)
)

func (k RBPKind) String() string {
	switch k {
	case RBPSame:
		return "same"
	case RBPOffset:
		return "cfa"
	case RBPUnsupported:
		return "unsupported"
	}
	return fmt.Sprintf("RBPKind(%d)", uint8(k))
}

// Row is the rule from PC (an ELF virtual address of the file) up to the
// next row's PC. It is 16 bytes.
type Row struct {
	PC     uint64
	CFAOff int32
	RBPOff int16
	CFA    CFAKind
	RBP    RBPKind
}

// RowSize is the in-memory size of a Row, for accounting.
const RowSize = 16

func (r Row) sameRule(o Row) bool {
	return r.CFA == o.CFA && r.CFAOff == o.CFAOff && r.RBP == o.RBP && r.RBPOff == o.RBPOff
}

func (r Row) String() string {
	s := fmt.Sprintf("%#x %s", r.PC, r.CFA)
	if r.CFA == CFARSP || r.CFA == CFARBP || r.CFA == CFAPLT {
		s += fmt.Sprintf("%+d", r.CFAOff)
	}
	s += " rbp=" + r.RBP.String()
	if r.RBP == RBPOffset {
		s += fmt.Sprintf("%+d", r.RBPOff)
	}
	return s
}

// Stats counts what went into a table.
type Stats struct {
	EhFrameBytes, DebugFrameBytes int
	FDEs                          int // FDEs in the table
	SkippedFDEs                   int // empty or outside executable segments
	ShadowedFDEs                  int // .debug_frame FDEs already covered by .eh_frame
	Overlaps                      int // FDEs overlapping an earlier one (the later wins)
	BadRecords                    int // CIEs/FDEs/programs that could not be parsed
	UnsupportedFDEs               int // FDEs with at least one unsupported row
	Rows                          int
	UnsupportedRows               int
}

// Table is the sorted unwind table of one file.
type Table struct {
	Rows  []Row
	Stats Stats
}

// Lookup returns the row in effect at pc; CFANone if there is none.
func (t *Table) Lookup(pc uint64) Row {
	i := sort.Search(len(t.Rows), func(i int) bool { return t.Rows[i].PC > pc })
	if i == 0 {
		return Row{PC: pc}
	}
	return t.Rows[i-1]
}

// Bytes is the memory held by the rows.
func (t *Table) Bytes() int { return len(t.Rows) * RowSize }

// ErrArch is returned for files that are not x86-64.
var ErrArch = errors.New("unwind tables are only built for x86-64")

// maxSectionSize bounds what is read into memory from one file.
const maxSectionSize = 1 << 30

// Build reads the CFI of an x86-64 ELF file.
func Build(f *elf.File) (*Table, error) {
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return nil, ErrArch
	}
	b := &builder{}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			b.exec = append(b.exec, [2]uint64{p.Vaddr, p.Vaddr + p.Memsz})
		}
	}
	enc := encoding{ptrSize: 8, deref: derefFunc(f)}
	if s := f.Section(".text"); s != nil {
		enc.text = s.Addr
	}
	if s := f.Section(".got"); s != nil {
		enc.data = s.Addr
	}
	// One bad section does not hide the other: .debug_frame may cover
	// what a damaged .eh_frame cannot.
	var eh, dbg []fdeRows
	var errs []error
	if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		data, err := sectionData(s)
		if err == nil {
			b.stats.EhFrameBytes = len(data)
			e := enc
			e.secAddr = s.Addr
			eh, err = b.collect(newCFIParser(data, ehFrame, f.ByteOrder, e))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf(".eh_frame: %w", err))
		}
	}
	if s := f.Section(".debug_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		data, err := sectionData(s)
		if err == nil {
			b.stats.DebugFrameBytes = len(data)
			dbg, err = b.collect(newCFIParser(data, debugFrame, f.ByteOrder, enc))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf(".debug_frame: %w", err))
		}
	}
	if len(eh) == 0 && len(dbg) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return b.table(eh, dbg), nil
}

func sectionData(s *elf.Section) ([]byte, error) {
	if s.Size > maxSectionSize {
		return nil, fmt.Errorf("%s: %d bytes is too large", s.Name, s.Size)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	if len(data) > maxSectionSize {
		return nil, fmt.Errorf("%s: %d bytes is too large", s.Name, len(data))
	}
	return data, nil
}

// derefFunc reads 8-byte words of loaded file contents by vaddr.
func derefFunc(f *elf.File) func(uint64) (uint64, bool) {
	return func(addr uint64) (uint64, bool) {
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr+8 > p.Filesz || addr-p.Vaddr+8 < 8 {
				continue
			}
			var buf [8]byte
			if _, err := p.ReadAt(buf[:], int64(addr-p.Vaddr)); err != nil {
				return 0, false
			}
			return f.ByteOrder.Uint64(buf[:]), true
		}
		return 0, false
	}
}

// BuildFromEhFrame builds a table from a bare .eh_frame section loaded
// at vaddr, without an ELF file (for tests and fuzzing).
func BuildFromEhFrame(data []byte, vaddr uint64) (*Table, error) {
	b := &builder{}
	rows, err := b.collect(newCFIParser(data, ehFrame, binary.LittleEndian, encoding{secAddr: vaddr, ptrSize: 8}))
	if err != nil && len(rows) == 0 {
		return nil, err
	}
	return b.table(rows, nil), nil
}

// fdeRows is one FDE converted to rows, the last one being its end.
type fdeRows struct {
	begin, end  uint64
	lo, hi      int // rows are builder.arena[lo:hi]
	unsupported bool
}

type builder struct {
	exec  [][2]uint64 // executable PT_LOAD ranges; nil = accept all
	stats Stats
	arena []Row    // rows of all FDEs, one allocation instead of one per FDE
	raw   []rawRow // scratch for runFDE
}

func (b *builder) inExec(begin, end uint64) bool {
	if b.exec == nil {
		return true
	}
	for _, r := range b.exec {
		if begin >= r[0] && end <= r[1] {
			return true
		}
	}
	return false
}

// collect converts every FDE of a section.
func (b *builder) collect(p *cfiParser) ([]fdeRows, error) {
	var out []fdeRows
	err := p.fdes(func(f *fde, bad bool) {
		if f.end == f.begin || !b.inExec(f.begin, f.end) {
			b.stats.SkippedFDEs++
			return
		}
		fr := fdeRows{begin: f.begin, end: f.end}
		var err error
		if !bad {
			if f.cie.raReg != regRA {
				err = fmt.Errorf("return address in register %d", f.cie.raReg)
			} else {
				b.raw, err = runFDE(p, f, b.raw)
			}
		}
		fr.lo = len(b.arena)
		if bad || err != nil {
			b.stats.BadRecords++
			// The range is known but its rules are not: never guess.
			b.arena = append(b.arena, Row{PC: f.begin, CFA: CFAUnsupported, RBP: RBPUnsupported})
			fr.hi = len(b.arena)
			fr.unsupported = true
			out = append(out, fr)
			return
		}
		for _, rr := range b.raw {
			row := compact(rr)
			if row.CFA == CFAUnsupported || row.RBP == RBPUnsupported {
				fr.unsupported = true
			}
			b.arena = append(b.arena, row)
		}
		fr.hi = len(b.arena)
		if fr.hi == fr.lo {
			b.stats.SkippedFDEs++
			return
		}
		out = append(out, fr)
	})
	b.stats.BadRecords += p.errs
	if err != nil {
		b.stats.BadRecords++ // the rest of the section is lost
	}
	return out, err
}

// compact maps a CFI row onto the table's rule kinds.
func compact(rr rawRow) Row {
	row := Row{PC: rr.pc}
	st := rr.state
	switch {
	case st.ra.kind == ruleUndefined:
		row.CFA = CFAEnd
		return row
	case st.ra.kind != ruleOffset || st.ra.off != -8:
		row.CFA = CFAUnsupported
	case st.rsp.kind != ruleSame && (st.rsp.kind != ruleValOffset || st.rsp.off != 0):
		// The caller's rsp is the CFA unless a rule says otherwise.
		row.CFA = CFAUnsupported
	case st.cfa.expr != nil:
		if off, ok := pltExpr(st.cfa.expr); ok {
			row.CFA, row.CFAOff = CFAPLT, off
		} else {
			row.CFA = CFAUnsupported
		}
	case st.cfa.off < math.MinInt32 || st.cfa.off > math.MaxInt32:
		row.CFA = CFAUnsupported
	case st.cfa.reg == regRSP:
		row.CFA, row.CFAOff = CFARSP, int32(st.cfa.off)
	case st.cfa.reg == regRBP:
		row.CFA, row.CFAOff = CFARBP, int32(st.cfa.off)
	default:
		row.CFA = CFAUnsupported
	}
	switch {
	case st.rbp.kind == ruleSame:
		row.RBP = RBPSame
	case st.rbp.kind == ruleOffset && st.rbp.off >= math.MinInt16 && st.rbp.off <= math.MaxInt16:
		row.RBP, row.RBPOff = RBPOffset, int16(st.rbp.off)
	default:
		row.RBP = RBPUnsupported
	}
	if row.CFA == CFAUnsupported {
		row.CFAOff = 0
	}
	return row
}

// DWARF expression opcodes used by the PLT CFA expression.
const (
	opLit0  = 0x30
	opBreg0 = 0x70
	opAnd   = 0x1a
	opGe    = 0x2a
	opShl   = 0x24
	opPlus  = 0x22
)

// pltExpr recognises the CFA expression GNU ld emits for lazy PLT entries:
//
//	DW_OP_breg7 (rsp) N; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and;
//	DW_OP_lit11; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus
//
// i.e. rsp + N + ((rip&15) >= 11) << 3, and returns N.
func pltExpr(e []byte) (int32, bool) {
	r := &reader{b: e, order: binary.LittleEndian}
	if r.u8() != opBreg0+regRSP {
		return 0, false
	}
	n := r.sleb()
	if r.u8() != opBreg0+regRA || r.sleb() != 0 {
		return 0, false
	}
	rest := r.bytes(uint64(r.left()))
	want := []byte{opLit0 + 15, opAnd, opLit0 + 11, opGe, opLit0 + 3, opShl, opPlus}
	if r.err != nil || string(rest) != string(want) || n < 0 || n > math.MaxInt32 {
		return 0, false
	}
	return int32(n), true
}

// table sorts and merges the FDEs: .eh_frame first, .debug_frame only
// where .eh_frame has nothing.
func (b *builder) table(eh, dbg []fdeRows) *Table {
	sortFDEs(eh)
	all := eh
	for _, d := range dbg {
		if covered(eh, d.begin, d.end) {
			b.stats.ShadowedFDEs++
			continue
		}
		all = append(all, d)
	}
	sortFDEs(all)
	t := &Table{Rows: make([]Row, 0, len(b.arena)+len(all))}
	var end uint64
	for i, f := range all {
		if i > 0 && f.begin < end {
			b.stats.Overlaps++
			// Drop the earlier rows from f.begin on; the later FDE wins.
			k := sort.Search(len(t.Rows), func(k int) bool { return t.Rows[k].PC >= f.begin })
			t.Rows = t.Rows[:k]
		} else if n := len(t.Rows); n > 0 && t.Rows[n-1].PC == f.begin && t.Rows[n-1].CFA == CFANone {
			t.Rows = t.Rows[:n-1] // the previous FDE's end marker
		}
		for _, r := range b.arena[f.lo:f.hi] {
			t.Rows = appendMerged(t.Rows, r)
		}
		t.Rows = appendMerged(t.Rows, Row{PC: f.end})
		end = f.end
		if f.unsupported {
			b.stats.UnsupportedFDEs++
		}
	}
	b.stats.FDEs = len(all)
	b.stats.Rows = len(t.Rows)
	for _, r := range t.Rows {
		if r.CFA == CFAUnsupported || r.RBP == RBPUnsupported {
			b.stats.UnsupportedRows++
		}
	}
	t.Stats = b.stats
	if cap(t.Rows)-len(t.Rows) > len(t.Rows)/4 {
		t.Rows = append([]Row(nil), t.Rows...) // drop spare capacity after merging
	}
	return t
}

// appendMerged appends r unless it repeats the previous rule.
func appendMerged(rows []Row, r Row) []Row {
	if n := len(rows); n > 0 {
		last := rows[n-1]
		if last.PC == r.PC {
			rows = rows[:n-1] // a zero-length row is replaced
			return appendMerged(rows, r)
		}
		if last.sameRule(r) {
			return rows
		}
	}
	return append(rows, r)
}

func sortFDEs(f []fdeRows) {
	sort.SliceStable(f, func(i, j int) bool { return f[i].begin < f[j].begin })
}

// covered reports whether [begin,end) intersects an FDE of sorted fs.
func covered(fs []fdeRows, begin, end uint64) bool {
	i := sort.Search(len(fs), func(i int) bool { return fs[i].end > begin })
	return i < len(fs) && fs[i].begin < end
}
