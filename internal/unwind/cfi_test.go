package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"testing"
)

// cfiBuf assembles synthetic CFI sections for encodings that real
// x86-64 files rarely use.
type cfiBuf struct{ bytes.Buffer }

func (b *cfiBuf) u8(v ...byte) { b.Write(v) }
func (b *cfiBuf) u16(v uint16) { binary.Write(&b.Buffer, binary.LittleEndian, v) }
func (b *cfiBuf) u32(v uint32) { binary.Write(&b.Buffer, binary.LittleEndian, v) }
func (b *cfiBuf) u64(v uint64) { binary.Write(&b.Buffer, binary.LittleEndian, v) }
func (b *cfiBuf) uleb(v uint64) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b.u8(c)
		if v == 0 {
			return
		}
	}
}
func (b *cfiBuf) sleb(v int64) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		done := (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0)
		if !done {
			c |= 0x80
		}
		b.u8(c)
		if done {
			return
		}
	}
}

// record appends a length-prefixed record whose body is filled by f and
// returns the record's offset.
func (b *cfiBuf) record(f func(body *cfiBuf)) int {
	off := b.Len()
	var body cfiBuf
	f(&body)
	for body.Len()%8 != 4 { // pad with DW_CFA_nop to 8-byte records
		body.u8(0)
	}
	b.u32(uint32(body.Len()))
	b.Write(body.Bytes())
	return off
}

// ehCIE appends an .eh_frame CIE with augmentation aug and data augData,
// and the standard x86-64 initial rules.
func (b *cfiBuf) ehCIE(aug string, augData []byte) int {
	return b.record(func(c *cfiBuf) {
		c.u32(0)
		c.u8(1)
		c.WriteString(aug)
		c.u8(0)
		c.uleb(1)
		c.sleb(-8)
		c.u8(16)
		if aug != "" && aug[0] == 'z' {
			c.uleb(uint64(len(augData)))
			c.Write(augData)
		}
		c.u8(cfaDefCFA, 7, 8)
		c.u8(cfaOffset|16, 1)
	})
}

// ehFDE appends an FDE for cie; addr writes the begin and range fields.
func (b *cfiBuf) ehFDE(cieOff int, hasAug bool, addr func(c *cfiBuf, fieldOff int), insns ...byte) {
	b.record(func(c *cfiBuf) {
		ptrOff := b.Len() + 4
		c.u32(uint32(ptrOff - cieOff))
		addr(c, b.Len()+4+c.Len())
		if hasAug {
			c.uleb(0)
		}
		c.Write(insns)
	})
}

// standard body: push rbp at +1, mov rsp,rbp at +4.
var fpInsns = []byte{
	cfaAdvanceLoc | 1, cfaDefCFAOffset, 16, cfaOffset | 6, 2,
	cfaAdvanceLoc | 3, cfaDefCFARegister, 6,
}

func checkFP(t *testing.T, name string, tab *Table, begin uint64) {
	t.Helper()
	want := []Row{
		{PC: begin, CFA: CFARSP, CFAOff: 8},
		{PC: begin + 1, CFA: CFARSP, CFAOff: 16, RBP: RBPOffset, RBPOff: -16},
		{PC: begin + 4, CFA: CFARBP, CFAOff: 16, RBP: RBPOffset, RBPOff: -16},
		{PC: begin + 0x20},
	}
	if len(tab.Rows) != len(want) {
		t.Fatalf("%s: rows %v, want %v (stats %+v)", name, tab.Rows, want, tab.Stats)
	}
	for i := range want {
		if tab.Rows[i] != want[i] {
			t.Errorf("%s: row %d = %v, want %v", name, i, tab.Rows[i], want[i])
		}
	}
}

func TestPointerEncodings(t *testing.T) {
	const vaddr, fn = 0x10000, 0x4000
	for _, tc := range []struct {
		name string
		enc  byte
		put  func(c *cfiBuf, fieldOff int)
	}{
		{"absptr", peAbsptr, func(c *cfiBuf, _ int) { c.u64(fn); c.u64(0x20) }},
		{"udata2", peUdata2, func(c *cfiBuf, _ int) { c.u16(fn); c.u16(0x20) }},
		{"udata4", peUdata4, func(c *cfiBuf, _ int) { c.u32(fn); c.u32(0x20) }},
		{"udata8", peUdata8, func(c *cfiBuf, _ int) { c.u64(fn); c.u64(0x20) }},
		{"uleb128", peULEB128, func(c *cfiBuf, _ int) { c.uleb(fn); c.uleb(0x20) }},
		{"sleb128", peSLEB128, func(c *cfiBuf, _ int) { c.sleb(fn); c.sleb(0x20) }},
		{"sdata2", peSdata2, func(c *cfiBuf, _ int) { c.u16(fn); c.u16(0x20) }},
		{"sdata8", peSdata8, func(c *cfiBuf, _ int) { c.u64(fn); c.u64(0x20) }},
		{"pcrel|sdata4", pePCRel | peSdata4, func(c *cfiBuf, off int) {
			c.u32(uint32(int32(fn - (vaddr + off))))
			c.u32(0x20)
		}},
		{"pcrel|sleb128", pePCRel | peSLEB128, func(c *cfiBuf, off int) { c.sleb(int64(fn - (vaddr + off))); c.sleb(0x20) }},
	} {
		var b cfiBuf
		cie := b.ehCIE("zPLSR", []byte{peUdata4, 0, 0, 0, 0, peAbsptr, tc.enc})
		b.ehFDE(cie, true, tc.put, fpInsns...)
		b.u32(0)
		tab, err := BuildFromEhFrame(b.Bytes(), vaddr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkFP(t, tc.name, tab, fn)
	}
}

func TestCIEVariants(t *testing.T) {
	// "eh": the pre-'z' GCC layout with a pointer after the augmentation.
	var b cfiBuf
	cie := b.record(func(c *cfiBuf) {
		c.u32(0)
		c.u8(1)
		c.WriteString("eh")
		c.u8(0)
		c.u64(0)
		c.uleb(1)
		c.sleb(-8)
		c.u8(16)
		c.u8(cfaDefCFA, 7, 8, cfaOffset|16, 1)
	})
	b.ehFDE(cie, false, func(c *cfiBuf, _ int) { c.u64(0x4000); c.u64(0x20) }, fpInsns...)
	tab, err := BuildFromEhFrame(b.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkFP(t, "eh", tab, 0x4000)

	// An unknown augmentation without 'z' cannot be skipped: the FDE is
	// counted as bad, not guessed.
	var u cfiBuf
	cie = u.ehCIE("xyz", nil)
	u.ehFDE(cie, false, func(c *cfiBuf, _ int) { c.u64(0x4000); c.u64(0x20) }, fpInsns...)
	tab, err = BuildFromEhFrame(u.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rows) != 0 || tab.Stats.BadRecords != 1 {
		t.Errorf("unknown augmentation: rows %v, stats %+v", tab.Rows, tab.Stats)
	}

	// A bad instruction after a valid header: the FDE's range is known,
	// so it is marked unsupported as a whole.
	var bad cfiBuf
	cie = bad.ehCIE("zR", []byte{peAbsptr})
	bad.ehFDE(cie, true, func(c *cfiBuf, _ int) { c.u64(0x4000); c.u64(0x20) }, cfaAdvanceLoc|1, 0x3f)
	tab, _ = BuildFromEhFrame(bad.Bytes(), 0)
	if len(tab.Rows) != 2 || tab.Rows[0].CFA != CFAUnsupported || tab.Stats.UnsupportedFDEs != 1 {
		t.Errorf("bad instruction: rows %v, stats %+v", tab.Rows, tab.Stats)
	}
}

// TestInstructions covers rules compilers rarely emit on x86-64.
func TestInstructions(t *testing.T) {
	var b cfiBuf
	cie := b.ehCIE("zR", []byte{peAbsptr})
	b.ehFDE(cie, true, func(c *cfiBuf, _ int) { c.u64(0x1000); c.u64(0x100) },
		cfaAdvanceLoc1, 4, cfaDefCFASF, 7, 0x7e, // rsp + -2*-8 = rsp+16
		cfaOffsetExtendedSF, 6, 0x7e, // rbp at cfa+16
		cfaAdvanceLoc2, 4, 0, cfaGNUArgsSize, 8, cfaRestoreExtended, 6, // rbp same again
		cfaAdvanceLoc4, 4, 0, 0, 0, cfaValOffset, 6, 1, // rbp = cfa-8: unsupported
		cfaAdvanceLoc|4, cfaSameValue, 6, cfaGNUNegOffsetExt, 6, 3, // rbp at cfa+24
		cfaAdvanceLoc|4, cfaUndefined, 16, // outermost frame
		cfaAdvanceLoc|4, cfaOffsetExtended, 16, 1, cfaDefCFA, 6, 32, // rbp+32
		cfaAdvanceLoc|4, cfaRegister, 16, 0, // RA in rax: unsupported
		cfaAdvanceLoc|4, cfaOffset|16, 1, cfaDefCFAExpression, 2, opBreg0+7, 8, // rsp+8 as an expression: unsupported
		cfaAdvanceLoc|4, cfaDefCFA, 7, 8, cfaValExpression, 6, 1, opLit0, // rbp as val_expression: unsupported
		cfaAdvanceLoc|4, cfaExpression, 7, 1, opLit0, // rsp rule: unsupported
	)
	tab, err := BuildFromEhFrame(b.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{PC: 0x1000, CFA: CFARSP, CFAOff: 8},
		{PC: 0x1004, CFA: CFARSP, CFAOff: 16, RBP: RBPOffset, RBPOff: 16},
		{PC: 0x1008, CFA: CFARSP, CFAOff: 16},
		{PC: 0x100c, CFA: CFARSP, CFAOff: 16, RBP: RBPUnsupported},
		{PC: 0x1010, CFA: CFARSP, CFAOff: 16, RBP: RBPOffset, RBPOff: 24},
		{PC: 0x1014, CFA: CFAEnd},
		{PC: 0x1018, CFA: CFARBP, CFAOff: 32, RBP: RBPOffset, RBPOff: 24},
		{PC: 0x101c, CFA: CFAUnsupported, RBP: RBPOffset, RBPOff: 24},
		{PC: 0x1024, CFA: CFARSP, CFAOff: 8, RBP: RBPUnsupported},
		{PC: 0x1028, CFA: CFAUnsupported, RBP: RBPUnsupported},
		{PC: 0x1100},
	}
	if len(tab.Rows) != len(want) {
		t.Fatalf("rows:\n%v\nwant\n%v", tab.Rows, want)
	}
	for i := range want {
		if tab.Rows[i] != want[i] {
			t.Errorf("row %d = %v, want %v", i, tab.Rows[i], want[i])
		}
	}
}

// TestDebugFrame64 covers the 64-bit DWARF format and CIE version 4.
func TestDebugFrame64(t *testing.T) {
	var b cfiBuf
	rec := func(f func(c *cfiBuf)) int {
		off := b.Len()
		var c cfiBuf
		f(&c)
		b.u32(0xffffffff)
		b.u64(uint64(c.Len()))
		b.Write(c.Bytes())
		return off
	}
	cie := rec(func(c *cfiBuf) {
		c.u64(0xffffffffffffffff)
		c.u8(4)
		c.u8(0)
		c.u8(8, 0) // address size, segment selector size
		c.uleb(1)
		c.sleb(-8)
		c.uleb(16)
		c.u8(cfaDefCFA, 7, 8, cfaOffset|16, 1)
	})
	rec(func(c *cfiBuf) {
		c.u64(uint64(cie))
		c.u64(0x4000)
		c.u64(0x20)
		c.Write(fpInsns)
	})
	p := newCFIParser(b.Bytes(), debugFrame, binary.LittleEndian, encoding{ptrSize: 8})
	bld := &builder{}
	fdes, err := bld.collect(p)
	if err != nil {
		t.Fatal(err)
	}
	checkFP(t, "debug_frame64", bld.table(nil, fdes), 0x4000)
}

func TestIndirectAndDataRel(t *testing.T) {
	const got = 0x9000
	var b cfiBuf
	cie := b.ehCIE("zR", []byte{peIndirect | peDataRel | peUdata4})
	b.ehFDE(cie, true, func(c *cfiBuf, _ int) { c.u32(0x10); c.u32(0x20) }, fpInsns...)
	p := newCFIParser(b.Bytes(), ehFrame, binary.LittleEndian, encoding{ptrSize: 8, data: got,
		deref: func(addr uint64) (uint64, bool) { return 0x4000, addr == got+0x10 }})
	bld := &builder{}
	fdes, err := bld.collect(p)
	if err != nil {
		t.Fatal(err)
	}
	checkFP(t, "indirect|datarel", bld.table(fdes, nil), 0x4000)
	// Without file contents an indirect pointer is an error, not a guess.
	tab, _ := BuildFromEhFrame(b.Bytes(), 0)
	if len(tab.Rows) != 0 || tab.Stats.BadRecords == 0 {
		t.Errorf("indirect without contents: %v %+v", tab.Rows, tab.Stats)
	}
}

func TestNotX86(t *testing.T) {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	f.Machine = elf.EM_AARCH64
	if _, err := Build(f); err != ErrArch {
		t.Errorf("arm64 file: %v", err)
	}
}

// FuzzParseEhFrame: the CFI parser must never panic, and whatever it
// builds must be a sorted table.
func FuzzParseEhFrame(f *testing.F) {
	var b cfiBuf
	cie := b.ehCIE("zPLR", []byte{peUdata4, 0, 0, 0, 0, peAbsptr, pePCRel | peSdata4})
	b.ehFDE(cie, true, func(c *cfiBuf, off int) { c.u32(uint32(0x1000 - off)); c.u32(0x40) }, fpInsns...)
	b.ehFDE(cie, true, func(c *cfiBuf, off int) { c.u32(uint32(0x2000 - off)); c.u32(0x40) },
		cfaRememberState, cfaAdvanceLoc|2, cfaDefCFAExpression, 2, opBreg0+7, 8, cfaRestoreState, cfaSetLoc, 0x10, 0, 0, 0)
	f.Add(b.Bytes(), uint64(0))
	// A slice of real CFI when the system has it.
	if ef, err := elf.Open("/lib/x86_64-linux-gnu/libc.so.6"); err == nil {
		if s := ef.Section(".eh_frame"); s != nil {
			if data, err := s.Data(); err == nil && len(data) > 4096 {
				f.Add(data[:4096], s.Addr)
			}
		}
		ef.Close()
	}
	if gcc, err := exec.LookPath("gcc"); err == nil {
		out := f.TempDir() + "/frames"
		if exec.Command(gcc, "-O2", "-o", out, fixtureSrc).Run() == nil {
			if ef, err := elf.Open(out); err == nil {
				if s := ef.Section(".eh_frame"); s != nil {
					if data, err := s.Data(); err == nil {
						f.Add(data, s.Addr)
					}
				}
				ef.Close()
			}
			os.Remove(out)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, vaddr uint64) {
		tab, err := BuildFromEhFrame(data, vaddr)
		if err != nil {
			return
		}
		checkSorted(t, tab)
		for _, dbg := range []bool{false, true} {
			kind := ehFrame
			if dbg {
				kind = debugFrame
			}
			bld := &builder{}
			fdes, _ := bld.collect(newCFIParser(data, kind, binary.LittleEndian, encoding{secAddr: vaddr, ptrSize: 8}))
			checkSorted(t, bld.table(fdes, nil))
		}
	})
}
