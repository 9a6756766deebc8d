package python

// The location table of CPython 3.11+ code objects (co_linetable; the
// format is described in CPython's Objects/locations.md). Each entry starts
// with a byte 1CCCCLLL: C is a code saying how the location is stored, L+1
// the number of code units (2-byte instruction words, caches included) it
// covers. The line is kept as a delta from the previous entry's, starting
// at co_firstlineno.
const (
	locShortMax  = 9  // 0-9: short form, same line, one column byte
	locOneLine0  = 10 // 10-12: one-line forms, delta = code-10, two bytes
	locOneLine2  = 12
	locNoColumns = 13 // delta as a signed varint
	locLong      = 14 // signed varint delta, then three varints
	locNone      = 15 // no location
)

// lineReader walks a location table without ever reading past its end.
type lineReader struct {
	b   []byte
	pos int
	bad bool
}

func (r *lineReader) byte() byte {
	if r.pos >= len(r.b) {
		r.bad = true
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

// varint reads 6-bit groups, low first; bit 6 says another group follows.
func (r *lineReader) varint() uint64 {
	c := r.byte()
	v := uint64(c & 63)
	for shift := uint(6); c&64 != 0 && !r.bad; shift += 6 {
		if shift > 60 {
			r.bad = true
			return 0
		}
		c = r.byte()
		v |= uint64(c&63) << shift
	}
	return v
}

func (r *lineReader) svarint() int64 {
	u := r.varint()
	if u&1 != 0 {
		return -int64(u >> 1)
	}
	return int64(u >> 1)
}

// LineForInstr returns the source line of the code unit at index instr,
// given co_linetable and co_firstlineno; 0 when the table says the
// instruction has no line, or does not cover it (a corrupt or foreign
// table never panics, it just gives 0).
func LineForInstr(table []byte, firstLine int, instr uint32) int {
	r := lineReader{b: table}
	line := int64(firstLine)
	var addr uint64
	for r.pos < len(r.b) {
		first := r.byte()
		if first&0x80 == 0 {
			return 0 // not at an entry start: corrupt
		}
		code := (first >> 3) & 15
		length := uint64(first&7) + 1
		hasLine := true
		switch {
		case code == locNone:
			hasLine = false
		case code == locLong:
			line += r.svarint()
			r.varint()
			r.varint()
			r.varint()
		case code == locNoColumns:
			line += r.svarint()
		case code >= locOneLine0 && code <= locOneLine2:
			line += int64(code - locOneLine0)
			r.byte()
			r.byte()
		default: // short forms
			r.byte()
		}
		if r.bad {
			return 0
		}
		if uint64(instr) < addr+length {
			if !hasLine || line <= 0 || line > 1<<31 {
				return 0
			}
			return int(line)
		}
		addr += length
	}
	return 0
}
