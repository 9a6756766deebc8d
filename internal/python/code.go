package python

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame is one resolved Python frame.
type Frame struct {
	Function  string // co_qualname, e.g. "Worker.run" or "<module>"
	File      string // co_filename
	Line      int    // the line of the instruction, 0 if unknown
	FirstLine int    // co_firstlineno
}

// codeInfo is what one code object resolved to, with the fields that tell
// it apart from another object later allocated at the same address.
type codeInfo struct {
	id        codeID
	name      string
	file      string
	firstLine int
	table     []byte
}

type codeID struct {
	typ                       uint64
	argcount, firstLine       uint32
	filename, qualname, table uint64
}

// Limits on what is read from a code object, against garbage pointers.
const (
	maxString    = 4096
	maxLineTable = 1 << 20
)

// Resolve names the code object at code and the source line of its code
// unit instr, reading the process's memory. Results are cached by address;
// each call re-reads the code object's header and reuses the cache only if
// its type, argument count, first line and string pointers are unchanged,
// so a freed object whose address was reused is not mistaken for the old
// one.
func (t *Target) Resolve(code uint64, instr uint32) (Frame, error) {
	o := &t.Offsets
	hdr := make([]byte, o.CodeAdaptive)
	if err := t.read(code, hdr); err != nil {
		// Gone: nothing can have reused the address since it was
		// cached, so what was read while it lived stands.
		if ci, ok := t.codes[code]; ok && !t.alive() {
			return ci.frame(instr), nil
		}
		return Frame{}, err
	}
	le := binary.LittleEndian
	id := codeID{
		typ:       le.Uint64(hdr[8:]),
		argcount:  le.Uint32(hdr[o.CodeArgcount:]),
		firstLine: le.Uint32(hdr[o.CodeFirstLine:]),
		filename:  le.Uint64(hdr[o.CodeFilename:]),
		qualname:  le.Uint64(hdr[o.CodeQualname:]),
		table:     le.Uint64(hdr[o.CodeLinetable:]),
	}
	if t.codeType != 0 && id.typ != t.codeType {
		return Frame{}, fmt.Errorf("0x%x is not a code object", code)
	}
	ci, ok := t.codes[code]
	if !ok || ci.id != id {
		var err error
		if ci, err = t.readCode(id); err != nil {
			return Frame{}, fmt.Errorf("code object 0x%x: %w", code, err)
		}
		if len(t.codes) > 1<<16 {
			clear(t.codes) // bound memory for processes that churn code
		}
		t.codes[code] = ci
	}
	return ci.frame(instr), nil
}

func (ci *codeInfo) frame(instr uint32) Frame {
	return Frame{Function: ci.name, File: ci.file, FirstLine: ci.firstLine,
		Line: LineForInstr(ci.table, ci.firstLine, instr)}
}

// Prefetch reads and caches the code object at code, so it can be named
// after the process has exited. One already cached is left alone (Resolve
// checks it again).
func (t *Target) Prefetch(code uint64) error {
	if _, ok := t.codes[code]; ok {
		return nil
	}
	_, err := t.Resolve(code, 0)
	return err
}

// alive reports whether the process can still be read.
func (t *Target) alive() bool {
	var b [1]byte
	return t.read(t.Runtime, b[:]) == nil
}

func (t *Target) readCode(id codeID) (*codeInfo, error) {
	name, err := t.unicode(id.qualname)
	if err != nil {
		return nil, fmt.Errorf("co_qualname: %w", err)
	}
	file, err := t.unicode(id.filename)
	if err != nil {
		return nil, fmt.Errorf("co_filename: %w", err)
	}
	table, err := t.bytes(id.table)
	if err != nil {
		return nil, fmt.Errorf("co_linetable: %w", err)
	}
	return &codeInfo{id: id, name: name, file: file, firstLine: int(int32(id.firstLine)), table: table}, nil
}

// unicode reads a compact str object (code object names always are).
func (t *Target) unicode(addr uint64) (string, error) {
	o := &t.Offsets
	hdr := make([]byte, max(o.UnicodeState+4, o.UnicodeLength+8))
	if err := t.read(addr, hdr); err != nil {
		return "", err
	}
	n := int64(binary.LittleEndian.Uint64(hdr[o.UnicodeLength:]))
	state := binary.LittleEndian.Uint32(hdr[o.UnicodeState:])
	kind := (state >> 2) & 7
	compact, ascii := state&(1<<5) != 0, state&(1<<6) != 0
	if n < 0 || n > maxString {
		return "", fmt.Errorf("string length %d", n)
	}
	if !compact {
		return "", errors.New("not a compact string")
	}
	if ascii {
		b := make([]byte, n)
		err := t.read(addr+uint64(o.ASCIIData), b)
		return string(b), err
	}
	if kind != 1 && kind != 2 && kind != 4 {
		return "", fmt.Errorf("string kind %d", kind)
	}
	b := make([]byte, n*int64(kind))
	if err := t.read(addr+uint64(o.CompactData), b); err != nil {
		return "", err
	}
	rs := make([]rune, n)
	for i := range rs {
		switch kind {
		case 1:
			rs[i] = rune(b[i]) // latin-1
		case 2:
			rs[i] = rune(binary.LittleEndian.Uint16(b[2*i:])) // UCS-2
		case 4:
			rs[i] = rune(binary.LittleEndian.Uint32(b[4*i:]))
		}
	}
	return string(rs), nil
}

// bytes reads a bytes object's content.
func (t *Target) bytes(addr uint64) ([]byte, error) {
	o := &t.Offsets
	n, err := t.u64(addr + uint64(o.BytesSize))
	if err != nil {
		return nil, err
	}
	if n > maxLineTable {
		return nil, fmt.Errorf("bytes length %d", int64(n))
	}
	b := make([]byte, n)
	return b, t.read(addr+uint64(o.BytesData), b)
}
