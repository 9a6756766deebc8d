package python

import "testing"

func TestLineForInstr(t *testing.T) {
	// firstlineno 10:
	//  units 0-1: no columns, delta +0      -> 10
	//  units 2-4: one-line form, delta +1   -> 11
	//  units 5-5: short form                -> 11
	//  units 6-7: no location               -> 0
	//  units 8-11: long form, delta -2      -> 9
	//  units 12-12: no columns, delta +35   -> 44 (two-group varint)
	table := []byte{
		0x80 | 13<<3 | 1, 0x00,
		0x80 | 11<<3 | 2, 0x01, 0x02,
		0x80 | 3<<3 | 0, 0x05,
		0x80 | 15<<3 | 1,
		0x80 | 14<<3 | 3, 0x05, 0x00, 0x01, 0x02,
		0x80 | 13<<3 | 0, 0x40 | (70 & 63), 70 >> 6,
	}
	for _, tc := range []struct {
		instr uint32
		want  int
	}{
		{0, 10}, {1, 10}, {2, 11}, {4, 11}, {5, 11}, {6, 0}, {7, 0}, {8, 9}, {11, 9}, {12, 44}, {13, 0}, {1000, 0},
	} {
		if got := LineForInstr(table, 10, tc.instr); got != tc.want {
			t.Errorf("instr %d: line %d, want %d", tc.instr, got, tc.want)
		}
	}
}

func TestLineForInstrCorrupt(t *testing.T) {
	for _, table := range [][]byte{
		nil, {0x00}, {0x80 | 14<<3}, {0x80 | 14<<3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0x80 | 11<<3, 0x01},
	} {
		if got := LineForInstr(table, 1, 0); got != 0 {
			t.Errorf("table %x: line %d, want 0", table, got)
		}
	}
}

func FuzzLineForInstr(f *testing.F) {
	f.Add([]byte{0x80 | 13<<3 | 1, 0x00, 0x80 | 11<<3 | 2, 0x01, 0x02}, 5, uint32(3))
	f.Add([]byte{0x80 | 14<<3 | 3, 0x45, 0x7f, 0x01, 0x02}, 1, uint32(2))
	f.Add([]byte{0xff, 0xff, 0xff}, -3, uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, table []byte, first int, instr uint32) {
		if line := LineForInstr(table, first, instr); line < 0 {
			t.Fatalf("negative line %d", line)
		}
	})
}
