package attach

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/ringbuf"

	"blockprof/internal/python"
)

// PyFrame is one Python frame as the kernel recorded it: the code object's
// address and the index of the code unit it was executing (resolve both
// with internal/python while the process lives).
type PyFrame struct {
	Code  uint64
	Instr uint32
}

// PyStack is a thread's Python frames at switch-out, innermost first.
type PyStack struct {
	TGID   uint32 // the process the code addresses belong to
	Frames []PyFrame
	// Truncated: deeper than the walker goes; outer frames are missing.
	Truncated bool
}

// AddPython makes the frame walker read the Python frames of process tgid,
// a CPython found by internal/python. Requires Options.Python.
func (s *Session) AddPython(tgid uint32, t *python.Target) error {
	if !s.python {
		return fmt.Errorf("add Python target %d: session opened without Options.Python", tgid)
	}
	o := &t.Offsets
	v := blockprofPyTarget{
		Runtime:          t.Runtime,
		InterpretersHead: o.InterpretersHead,
		ThreadsHead:      o.ThreadsHead,
		ThreadNext:       o.ThreadNext,
		NativeThreadId:   o.NativeThreadID,
		ThreadFrame:      o.ThreadFrame,
		CframeCurrent:    o.CFrameCurrent,
		FrameCode:        o.FrameCode,
		FramePrevious:    o.FramePrevious,
		FrameInstr:       o.FrameInstr,
		FrameOwner:       o.FrameOwner,
		OwnerCstack:      o.OwnerCStack,
		CodeAdaptive:     o.CodeAdaptive,
	}
	if err := s.objs.PyTargets.Put(tgid, &v); err != nil {
		return fmt.Errorf("add Python target %d: %w", tgid, err)
	}
	return nil
}

// pyStack returns the frames stored under key (0: none), from the copy
// taken at an earlier drain or from the kernel's LRU map.
func (s *Session) pyStack(key uint64) *PyStack {
	if key == 0 {
		return nil
	}
	if st, ok := s.pystacks[key]; ok {
		return st
	}
	var raw blockprofPyStack
	if err := s.objs.PyStacks.Lookup(key, &raw); err != nil {
		return &PyStack{Truncated: true} // evicted: should not happen, see python.h
	}
	st := newPyStack(&raw)
	s.pystacks[key] = st
	s.pyByProc[st.TGID] = append(s.pyByProc[st.TGID], key)
	return st
}

// NextPythonStack waits for the kernel to store a new Python stack and
// returns it (kept for Drain too), so its code objects can be read while
// the process lives: a short-lived process may be gone by the drain that
// reports its intervals. It returns an error once the session is closed.
func (s *Session) NextPythonStack() (*PyStack, error) {
	s.mu.Lock()
	rd := s.pyReader
	if rd == nil && s.python && !s.closed {
		var err error
		if rd, err = ringbuf.NewReader(s.objs.PyNew); err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("read new Python stacks: %w", err)
		}
		s.pyReader = rd
	}
	s.mu.Unlock()
	if rd == nil {
		return nil, ringbuf.ErrClosed
	}
	for {
		rec, err := rd.Read()
		if err != nil {
			return nil, err
		}
		if len(rec.RawSample) < 8 {
			continue
		}
		key := binary.LittleEndian.Uint64(rec.RawSample)
		s.mu.Lock()
		st := s.pyStack(key)
		s.mu.Unlock()
		return st, nil
	}
}

func newPyStack(raw *blockprofPyStack) *PyStack {
	n := min(int(raw.N), len(raw.Code))
	st := &PyStack{TGID: raw.Tgid, Truncated: raw.Truncated != 0}
	for i := range n {
		if raw.Code[i] != 0 { // 0: an entry shim frame (3.12+)
			st.Frames = append(st.Frames, PyFrame{Code: raw.Code[i], Instr: raw.Instr[i]})
		}
	}
	return st
}
