package gopclntab

import "sort"

// run is one step of a decoded pc-value table: val holds for function
// offsets below end (and at or above the previous run's end).
type run struct {
	end uint32
	val int32
}

// runs is a decoded pc-value table, sorted by end.
type runs []run

// at returns the value at function offset off, or -1 when the table does
// not cover it (the runtime's answer for a missing entry).
func (r runs) at(off uint64) int32 {
	if len(r) == 0 || off >= uint64(r[len(r)-1].end) {
		return -1
	}
	o := uint32(off)
	i := sort.Search(len(r), func(i int) bool { return r[i].end > o })
	return r[i].val
}

// uvarint decodes an unsigned LEB128 value of at most 32 bits.
func uvarint(p []byte) (uint32, int) {
	var v uint32
	var shift uint
	for i := 0; i < len(p) && i < 5; i++ {
		b := p[i]
		v |= uint32(b&0x7f) << shift
		if b&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}

// decodeRuns walks the pc-value table starting at pctab[off] for a
// function of the given size. Each entry is a zig-zag value delta then a
// pc delta in quantum units; a zero value delta after the first entry
// ends the table.
func decodeRuns(pctab []byte, off uint32, size uint64, quantum uint32) runs {
	if off == 0 || uint64(off) >= uint64(len(pctab)) {
		return nil
	}
	p := pctab[off:]
	var out runs
	val := int32(-1)
	var pc uint64
	for first := true; len(p) > 0; first = false {
		uv, n := uvarint(p)
		if n == 0 || uv == 0 && !first {
			break
		}
		p = p[n:]
		val += int32(-(uv & 1) ^ (uv >> 1))
		pd, n := uvarint(p)
		if n == 0 {
			break
		}
		p = p[n:]
		if pd == 0 {
			continue
		}
		pc += uint64(pd) * uint64(quantum)
		end := pc
		if end > size {
			end = size
		}
		if end > 1<<32-1 {
			break
		}
		out = append(out, run{end: uint32(end), val: val})
		if pc >= size {
			break
		}
	}
	return out
}
