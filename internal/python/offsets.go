package python

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets are the byte offsets of the CPython structure fields the frame
// walker (in BPF) and the code-object reader (here) need.
type Offsets struct {
	// _PyRuntimeState.interpreters.head, PyInterpreterState.threads.head.
	InterpretersHead, ThreadsHead uint32
	// PyThreadState.next and .native_thread_id (the kernel tid, 3.11+).
	ThreadNext, NativeThreadID uint32
	// PyThreadState.cframe (3.11, 3.12) or .current_frame (3.13+).
	ThreadFrame uint32
	// _PyCFrame.current_frame; -1 when the thread state points at the
	// frame directly (3.13+).
	CFrameCurrent int32
	// _PyInterpreterFrame: f_code/f_executable, previous, prev_instr/
	// instr_ptr, owner.
	FrameCode, FramePrevious, FrameInstr, FrameOwner uint32
	// OwnerCStack is the owner value of the C-stack shim frames the walker
	// skips (FRAME_OWNED_BY_CSTACK, 3.12+); NoOwner when there are none.
	OwnerCStack uint32
	// PyCodeObject fields; CodeAdaptive is where the bytecode starts.
	CodeFilename, CodeQualname, CodeLinetable, CodeFirstLine, CodeArgcount, CodeAdaptive uint32
	// PyASCIIObject.state and .length; where a compact ASCII string's
	// data starts, and a compact non-ASCII one's.
	UnicodeState, UnicodeLength, ASCIIData, CompactData uint32
	// PyBytesObject ob_size and ob_sval.
	BytesSize, BytesData uint32
}

// NoOwner marks a version without C-stack shim frames.
const NoOwner = 0xffffffff

// frameReadSize is how many bytes of an interpreter frame the BPF walker
// reads at once: every field it needs must lie within.
const frameReadSize = 72

// Facts from CPython's headers at the v3.11.0 and v3.12.0 tags
// (Include/internal/pycore_runtime.h, pycore_interp.h, pycore_frame.h,
// cpython/pystate.h, cpython/code.h, cpython/unicodeobject.h), checked with
// gdb against the DWARF of 3.11.2 (Debian), 3.11.7 and 3.12.1 builds.
// Patch releases keep these layouts (CPython's ABI rules for a minor
// version).
var builtin = map[[2]int]Offsets{
	{3, 11}: {
		InterpretersHead: 40, ThreadsHead: 16, ThreadNext: 8, NativeThreadID: 160,
		ThreadFrame: 56, CFrameCurrent: 8,
		FrameCode: 32, FramePrevious: 48, FrameInstr: 56, FrameOwner: 69, OwnerCStack: NoOwner,
		CodeFilename: 112, CodeQualname: 128, CodeLinetable: 136, CodeFirstLine: 72, CodeArgcount: 56, CodeAdaptive: 184,
		UnicodeState: 32, UnicodeLength: 16, ASCIIData: 48, CompactData: 72,
		BytesSize: 16, BytesData: 32,
	},
	{3, 12}: {
		InterpretersHead: 40, ThreadsHead: 72, ThreadNext: 8, NativeThreadID: 144,
		ThreadFrame: 56, CFrameCurrent: 0,
		FrameCode: 0, FramePrevious: 8, FrameInstr: 56, FrameOwner: 70, OwnerCStack: 3,
		CodeFilename: 112, CodeQualname: 128, CodeLinetable: 136, CodeFirstLine: 68, CodeArgcount: 52, CodeAdaptive: 192,
		UnicodeState: 32, UnicodeLength: 16, ASCIIData: 40, CompactData: 56,
		BytesSize: 16, BytesData: 32,
	},
}

// debugOffsetsSize is how much of _Py_DebugOffsets (3.13) is read: up to
// and including unicode_object.
const debugOffsetsSize = 71 * 8

// parseDebugOffsets reads the _Py_DebugOffsets that CPython 3.13 keeps at
// the start of _PyRuntime (Include/internal/pycore_runtime.h at v3.13.0),
// for debuggers and profilers. Its own layout changes between minor
// versions, so only 3.13's is understood.
func parseDebugOffsets(b []byte) (Offsets, uint32, error) {
	if len(b) < debugOffsetsSize {
		return Offsets{}, 0, errors.New("_Py_DebugOffsets: short read")
	}
	if string(b[:8]) != "xdebugpy" {
		return Offsets{}, 0, errors.New("_Py_DebugOffsets: no cookie at _PyRuntime")
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[i*8:]) }
	version := uint32(u(1))
	if version>>16 != 0x030d {
		return Offsets{}, version, fmt.Errorf("_Py_DebugOffsets of version %s: layout not known", hexVersion(version))
	}
	if u(2) != 0 {
		return Offsets{}, version, errors.New("free-threaded build: not supported")
	}
	// Word indices into the 3.13 struct: cookie, version, free_threaded,
	// runtime_state{size, finalizing, interpreters_head},
	// interpreter_state{size, id, next, threads_head, +9 more},
	// thread_state{size, prev, next, interp, current_frame, thread_id,
	// native_thread_id, datastack_chunk, status},
	// interpreter_frame{size, previous, executable, instr_ptr, localsplus,
	// owner}, code_object{size, filename, name, qualname, linetable,
	// firstlineno, argcount, localsplusnames, localspluskinds,
	// co_code_adaptive}, pyobject{2}, type_object{4}, tuple{3}, list{3},
	// dict{3}, float{2}, long{3}, bytes_object{size, ob_size, ob_sval},
	// unicode_object{size, state, length, asciiobject_size}.
	o := Offsets{
		InterpretersHead: 5, ThreadsHead: 9, ThreadNext: 21, NativeThreadID: 25, ThreadFrame: 23,
		FramePrevious: 29, FrameCode: 30, FrameInstr: 31, FrameOwner: 33,
		CodeFilename: 35, CodeQualname: 37, CodeLinetable: 38, CodeFirstLine: 39, CodeArgcount: 40, CodeAdaptive: 43,
		BytesSize: 65, BytesData: 66,
		UnicodeState: 68, UnicodeLength: 69, ASCIIData: 70,
	}
	for _, f := range o.fields() {
		v := u(int(*f))
		if v > 1<<16 {
			return Offsets{}, version, fmt.Errorf("_Py_DebugOffsets: implausible offset %d", v)
		}
		*f = uint32(v)
	}
	o.CFrameCurrent = -1
	o.OwnerCStack = 3                // FRAME_OWNED_BY_CSTACK, pycore_frame.h
	o.CompactData = o.ASCIIData + 16 // utf8_length and utf8 follow the ASCII header
	return o, version, nil
}

// fields lists the unsigned offsets (not CFrameCurrent, not OwnerCStack).
func (o *Offsets) fields() []*uint32 {
	return []*uint32{
		&o.InterpretersHead, &o.ThreadsHead, &o.ThreadNext, &o.NativeThreadID, &o.ThreadFrame,
		&o.FrameCode, &o.FramePrevious, &o.FrameInstr, &o.FrameOwner,
		&o.CodeFilename, &o.CodeQualname, &o.CodeLinetable, &o.CodeFirstLine, &o.CodeArgcount, &o.CodeAdaptive,
		&o.UnicodeState, &o.UnicodeLength, &o.ASCIIData, &o.BytesSize, &o.BytesData,
	}
}

// check rejects offsets the walker cannot use: frame fields outside the
// bytes it reads at once, code fields beyond the header read here.
func (o *Offsets) check() error {
	for _, f := range []uint32{o.FrameCode, o.FramePrevious, o.FrameInstr} {
		if f+8 > frameReadSize {
			return fmt.Errorf("interpreter frame field at %d beyond the %d bytes read", f, frameReadSize)
		}
	}
	if o.FrameOwner >= frameReadSize {
		return fmt.Errorf("frame owner at %d beyond the %d bytes read", o.FrameOwner, frameReadSize)
	}
	if o.CodeAdaptive < 16 || o.CodeAdaptive > 1024 {
		return fmt.Errorf("code object header of %d bytes is implausible", o.CodeAdaptive)
	}
	// Resolve reads the header up to CodeAdaptive: 8-byte pointers and
	// 4-byte ints must lie within.
	for _, f := range []uint32{o.CodeFilename + 8, o.CodeQualname + 8, o.CodeLinetable + 8, o.CodeFirstLine + 4, o.CodeArgcount + 4} {
		if f > o.CodeAdaptive {
			return fmt.Errorf("code object field ending at %d beyond its %d-byte header", f, o.CodeAdaptive)
		}
	}
	if o.UnicodeState > 256 || o.UnicodeLength > 256 || o.ASCIIData > 256 || o.CompactData > 256 {
		return errors.New("str object offsets implausible")
	}
	return nil
}

func hexVersion(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v>>24, (v>>16)&0xff, (v>>8)&0xff)
}
