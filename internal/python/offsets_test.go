package python

import (
	"encoding/binary"
	"testing"
)

func TestBuiltinOffsetsCheck(t *testing.T) {
	for v, o := range builtin {
		if err := o.check(); err != nil {
			t.Errorf("%v: %v", v, err)
		}
	}
}

// debugOffsets313 builds a _Py_DebugOffsets as 3.13.0 has it (values
// read from a live pyenv 3.13.0).
func debugOffsets313() []byte {
	b := make([]byte, debugOffsetsSize)
	copy(b, "xdebugpy")
	put := func(i int, v uint64) { binary.LittleEndian.PutUint64(b[i*8:], v) }
	put(1, 0x030d00f0)
	for i, v := range map[int]uint64{5: 632, 9: 72, 21: 8, 23: 72, 25: 160, 29: 8, 30: 0, 31: 56, 33: 70,
		35: 112, 37: 128, 38: 136, 39: 68, 40: 52, 43: 200, 65: 16, 66: 32, 68: 32, 69: 16, 70: 40} {
		put(i, v)
	}
	return b
}

func TestParseDebugOffsets(t *testing.T) {
	o, v, err := parseDebugOffsets(debugOffsets313())
	if err != nil {
		t.Fatal(err)
	}
	if v != 0x030d00f0 || o.InterpretersHead != 632 || o.ThreadFrame != 72 || o.CFrameCurrent != -1 ||
		o.FrameInstr != 56 || o.CodeAdaptive != 200 || o.CompactData != 56 || o.NativeThreadID != 160 {
		t.Errorf("parsed %+v", o)
	}
	if err := o.check(); err != nil {
		t.Error(err)
	}
	bad := debugOffsets313()
	binary.LittleEndian.PutUint64(bad[8:], 0x030e00f0)
	if _, _, err := parseDebugOffsets(bad); err == nil {
		t.Error("3.14 layout accepted")
	}
	if _, _, err := parseDebugOffsets(bad[:100]); err == nil {
		t.Error("short input accepted")
	}
}

// Garbage must give an error or offsets that pass check, never a panic.
func FuzzParseDebugOffsets(f *testing.F) {
	f.Add(debugOffsets313())
	f.Add([]byte("xdebugpy"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, _, err := parseDebugOffsets(b)
		if err == nil {
			_ = o.check()
		}
	})
}
