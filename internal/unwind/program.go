package unwind

import (
	"errors"
	"fmt"
)

// DWARF register numbers on x86-64 (System V psABI, figure 3.36).
const (
	regRBP = 6
	regRSP = 7
	regRA  = 16
)

// ruleKind is how a caller's register is recovered (DWARF 5, 6.4.1).
type ruleKind uint8

const (
	ruleSame      ruleKind = iota // unchanged (also: no rule given)
	ruleUndefined                 // not recoverable
	ruleOffset                    // saved at CFA+off
	ruleValOffset                 // value is CFA+off
	ruleRegister                  // in another register
	ruleExpr                      // saved at an address computed by an expression
	ruleValExpr                   // value computed by an expression
)

type regRule struct {
	kind ruleKind
	off  int64
}

// cfaRule is reg+off, or an expression when expr is not nil.
type cfaRule struct {
	reg  uint64
	off  int64
	expr []byte
}

// frameState is the part of a CFI row that the x86-64 unwinder uses.
type frameState struct {
	cfa          cfaRule
	rbp, rsp, ra regRule
}

// Call frame instructions (DWARF 5, 6.4.2; GNU extensions from GCC).
const (
	cfaAdvanceLoc       = 0x40 // high two bits
	cfaOffset           = 0x80
	cfaRestore          = 0xc0
	cfaNop              = 0x00
	cfaSetLoc           = 0x01
	cfaAdvanceLoc1      = 0x02
	cfaAdvanceLoc2      = 0x03
	cfaAdvanceLoc4      = 0x04
	cfaOffsetExtended   = 0x05
	cfaRestoreExtended  = 0x06
	cfaUndefined        = 0x07
	cfaSameValue        = 0x08
	cfaRegister         = 0x09
	cfaRememberState    = 0x0a
	cfaRestoreState     = 0x0b
	cfaDefCFA           = 0x0c
	cfaDefCFARegister   = 0x0d
	cfaDefCFAOffset     = 0x0e
	cfaDefCFAExpression = 0x0f
	cfaExpression       = 0x10
	cfaOffsetExtendedSF = 0x11
	cfaDefCFASF         = 0x12
	cfaDefCFAOffsetSF   = 0x13
	cfaValOffset        = 0x14
	cfaValOffsetSF      = 0x15
	cfaValExpression    = 0x16
	cfaGNUArgsSize      = 0x2e
	cfaGNUNegOffsetExt  = 0x2f
)

// maxStateStack bounds remember_state nesting; compilers use one or two.
const maxStateStack = 64

var errStateStack = errors.New("remember_state stack overflow or underflow")

// rawRow is the state in effect from pc until the next row.
type rawRow struct {
	pc    uint64
	state frameState
}

// interp runs CFA programs for one CIE.
type interp struct {
	c       *cie
	p       *cfiParser
	initial frameState // after the CIE's initial instructions, for restore
}

// runFDE returns the rows of one FDE, in address order, all within
// [f.begin, f.end). On a bad instruction it returns the rows so far and
// an error.
// The rows are appended to buf[:0], so one buffer serves every FDE.
func runFDE(p *cfiParser, f *fde, buf []rawRow) ([]rawRow, error) {
	in := &interp{c: f.cie, p: p}
	var st frameState
	st.ra = regRule{kind: ruleSame}
	if err := in.run(f.cie.initial, &st, f, nil); err != nil {
		return nil, fmt.Errorf("CIE initial instructions: %w", err)
	}
	in.initial = st
	rows := buf[:0]
	err := in.run(f.insns, &st, f, &rows)
	return rows, err
}

// run executes insns. With rows nil (the CIE's initial instructions) no
// rows are emitted and location operations are errors.
func (in *interp) run(insns []byte, st *frameState, f *fde, rows *[]rawRow) error {
	r := &reader{b: insns, order: in.p.order}
	loc := f.begin
	var stack []frameState
	advance := func(delta uint64) error {
		if rows == nil {
			return errors.New("location change in CIE")
		}
		next := loc + delta*in.c.codeAlign
		if next < loc {
			return errors.New("location overflow")
		}
		if next > loc && loc < f.end {
			*rows = append(*rows, rawRow{loc, *st})
		}
		loc = next
		return nil
	}
	for r.left() > 0 && r.err == nil {
		op := r.u8()
		var err error
		switch op & 0xc0 {
		case cfaAdvanceLoc:
			err = advance(uint64(op & 0x3f))
		case cfaOffset:
			in.setReg(st, uint64(op&0x3f), regRule{ruleOffset, int64(r.uleb()) * in.c.dataAlign})
		case cfaRestore:
			in.restore(st, uint64(op&0x3f))
		default:
			err = in.step(op, r, st, &stack, f, &loc, advance)
		}
		if err != nil {
			return err
		}
	}
	if r.err != nil {
		return r.err
	}
	if rows != nil && loc < f.end {
		*rows = append(*rows, rawRow{loc, *st})
	}
	return nil
}

// step executes one instruction with a zero high-two-bits opcode.
func (in *interp) step(op byte, r *reader, st *frameState, stack *[]frameState, f *fde, loc *uint64, advance func(uint64) error) error {
	da := in.c.dataAlign
	switch op {
	case cfaNop:
	case cfaSetLoc:
		enc := in.c.fdeEnc
		if in.p.kind == debugFrame && !in.c.hasAug {
			enc = peAbsptr
		}
		e := in.p.enc
		e.ptrSize = in.c.addrSize
		// pcrel operands here are rare and would need the operand's
		// section offset; refuse them rather than compute a wrong base.
		if enc&0x70 == pePCRel {
			return errors.New("pcrel DW_CFA_set_loc")
		}
		to := r.readPointer(enc, &e, f.begin)
		if r.err != nil {
			return r.err
		}
		if to < *loc {
			return errors.New("DW_CFA_set_loc moves backwards")
		}
		return advanceTo(advance, *loc, to, in.c.codeAlign)
	case cfaAdvanceLoc1:
		return advance(uint64(r.u8()))
	case cfaAdvanceLoc2:
		return advance(uint64(r.u16()))
	case cfaAdvanceLoc4:
		return advance(uint64(r.u32()))
	case cfaOffsetExtended:
		reg := r.uleb()
		in.setReg(st, reg, regRule{ruleOffset, int64(r.uleb()) * da})
	case cfaOffsetExtendedSF:
		reg := r.uleb()
		in.setReg(st, reg, regRule{ruleOffset, r.sleb() * da})
	case cfaGNUNegOffsetExt:
		reg := r.uleb()
		in.setReg(st, reg, regRule{ruleOffset, -int64(r.uleb()) * da})
	case cfaValOffset:
		reg := r.uleb()
		in.setReg(st, reg, regRule{ruleValOffset, int64(r.uleb()) * da})
	case cfaValOffsetSF:
		reg := r.uleb()
		in.setReg(st, reg, regRule{ruleValOffset, r.sleb() * da})
	case cfaRestoreExtended:
		in.restore(st, r.uleb())
	case cfaUndefined:
		in.setReg(st, r.uleb(), regRule{kind: ruleUndefined})
	case cfaSameValue:
		in.setReg(st, r.uleb(), regRule{kind: ruleSame})
	case cfaRegister:
		reg := r.uleb()
		other := r.uleb()
		if reg == other {
			in.setReg(st, reg, regRule{kind: ruleSame})
		} else {
			in.setReg(st, reg, regRule{kind: ruleRegister, off: int64(other)})
		}
	case cfaRememberState:
		if len(*stack) >= maxStateStack {
			return errStateStack
		}
		*stack = append(*stack, *st)
	case cfaRestoreState:
		if len(*stack) == 0 {
			return errStateStack
		}
		// The CFA is part of the remembered state too (DWARF 5 6.4.2.4).
		*st = (*stack)[len(*stack)-1]
		*stack = (*stack)[:len(*stack)-1]
	case cfaDefCFA:
		st.cfa = cfaRule{reg: r.uleb(), off: int64(r.uleb())}
	case cfaDefCFASF:
		reg := r.uleb()
		st.cfa = cfaRule{reg: reg, off: r.sleb() * da}
	case cfaDefCFARegister:
		st.cfa.reg = r.uleb()
		if st.cfa.expr != nil {
			return errors.New("DW_CFA_def_cfa_register after an expression")
		}
	case cfaDefCFAOffset:
		if st.cfa.expr != nil {
			return errors.New("DW_CFA_def_cfa_offset after an expression")
		}
		st.cfa.off = int64(r.uleb())
	case cfaDefCFAOffsetSF:
		if st.cfa.expr != nil {
			return errors.New("DW_CFA_def_cfa_offset_sf after an expression")
		}
		st.cfa.off = r.sleb() * da
	case cfaDefCFAExpression:
		expr := r.bytes(r.uleb())
		if r.err == nil {
			st.cfa = cfaRule{expr: expr} // points into the section data
		}
	case cfaExpression:
		reg := r.uleb()
		r.bytes(r.uleb())
		in.setReg(st, reg, regRule{kind: ruleExpr})
	case cfaValExpression:
		reg := r.uleb()
		r.bytes(r.uleb())
		in.setReg(st, reg, regRule{kind: ruleValExpr})
	case cfaGNUArgsSize:
		r.uleb() // only matters for landing pads
	default:
		return fmt.Errorf("unknown CFA instruction %#x", op)
	}
	return r.err
}

// advanceTo moves to an absolute location through advance, which counts
// in code alignment units.
func advanceTo(advance func(uint64) error, loc, to, codeAlign uint64) error {
	if codeAlign == 0 {
		return errors.New("zero code alignment")
	}
	if (to-loc)%codeAlign != 0 {
		return errors.New("DW_CFA_set_loc not aligned")
	}
	return advance((to - loc) / codeAlign)
}

// setReg records a rule for the registers the unwinder tracks.
func (in *interp) setReg(st *frameState, reg uint64, rule regRule) {
	switch reg {
	case regRBP:
		st.rbp = rule
	case regRSP:
		st.rsp = rule
	case in.c.raReg:
		st.ra = rule
	}
}

func (in *interp) restore(st *frameState, reg uint64) {
	switch reg {
	case regRBP:
		st.rbp = in.initial.rbp
	case regRSP:
		st.rsp = in.initial.rsp
	case in.c.raReg:
		st.ra = in.initial.ra
	}
}
