package engine

import (
	"debug/elf"
	"errors"
	"fmt"
	"strings"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/python"
	"blockprof/internal/symbolize"
)

// pythonMapping holds the Python frames of every profile: a bracketed
// pseudo file, so pprof never tries to symbolize it.
var pythonMapping = &symbolize.Mapping{File: "[python]", HasFunctions: true, HasFilenames: true, HasLineNumbers: true}

// pyRetryFor is how long a new process that does not look like CPython is
// looked at again: a launched interpreter maps libpython only after exec.
const pyRetryFor = 2 * time.Second

// pyLaunchWait bounds the wait for a launched command's libpython.
const pyLaunchWait = 100 * time.Millisecond

// launched reports whether tgid is the command blockprof started.
func (r *recorder) launched(tgid uint32) bool {
	return r.child != 0 && tgid == r.child
}

// pyProc is what the recorder knows about one process as a Python target.
type pyProc struct {
	t         *python.Target // nil: not (or not yet) a readable CPython
	firstSeen time.Time
	done      bool // decided: registered, unsupported, or not Python
	closed    bool // exited: its memory handle is closed
}

// detectPythons says whether any of pids runs CPython, before attaching
// (the walker is loaded only then, or when a command is launched).
func detectPythons(pids []int) bool {
	for _, pid := range pids {
		t, err := python.Detect(pid)
		var unsup *python.UnsupportedError
		if err == nil {
			t.Close()
			return true
		}
		if errors.As(err, &unsup) {
			return true // warned about once attached
		}
	}
	return false
}

// attachPython registers tgid with the frame walker if it runs a CPython
// the walker can read; an unsupported version gets one warning line.
func (r *recorder) attachPython(tgid uint32) {
	if !r.python {
		return
	}
	p := r.pys[tgid]
	if p == nil {
		p = &pyProc{firstSeen: time.Now()}
		r.pys[tgid] = p
	}
	if p.done {
		return
	}
	t, err := python.Detect(int(tgid))
	// A command just launched maps libpython right after its exec: wait
	// for it briefly, as its first blocking call may come soon after. Only
	// if its executable links libpython: any other command would be held
	// up for nothing (and its short-lived children missed meanwhile).
	wait := errors.Is(err, python.ErrNotPython) && r.launched(tgid) && linksLibpython(tgid)
	for wait && errors.Is(err, python.ErrNotPython) && time.Since(p.firstSeen) < pyLaunchWait {
		time.Sleep(2 * time.Millisecond)
		t, err = python.Detect(int(tgid))
	}
	var unsup *python.UnsupportedError
	switch {
	case err == nil:
		if err := r.src.AddPython(tgid, t); err != nil {
			r.warn("warning: pid %d: %v; native stacks only", tgid, err)
			t.Close()
		} else {
			p.t = t
		}
		p.done = true
	case errors.As(err, &unsup):
		r.warn("warning: pid %d runs %v; native stacks only", tgid, unsup)
		p.done = true
	case time.Since(p.firstSeen) > pyRetryFor:
		p.done = true
	}
}

// retryPythons looks again at processes not yet known to be CPython, and
// lets go of the memory of those that exited (their code objects stay
// cached).
func (r *recorder) retryPythons() {
	for tgid, p := range r.pys {
		switch {
		case !p.done:
			r.attachPython(tgid)
		case p.t != nil && !p.closed && !ProcessExists(int(tgid)):
			p.t.Close()
			p.closed = true
		}
	}
}

// resolvePython names a record's Python frames now, while the process
// lives (code objects are read from its memory). It returns the frames as
// locations, innermost first, and a key telling different resolved
// stacks apart.
func (r *recorder) resolvePython(rec *attach.Record) ([]symbolize.Location, string) {
	if rec.Python == nil {
		return nil, ""
	}
	var t *python.Target
	if p := r.pys[rec.TGID]; p != nil {
		t = p.t
	}
	locs := make([]symbolize.Location, 0, len(rec.Python.Frames)+1)
	var key strings.Builder
	for _, f := range rec.Python.Frames {
		loc := symbolize.Location{Mapping: pythonMapping, Address: f.Code + 2*uint64(f.Instr)}
		if t != nil {
			if fr, err := t.Resolve(f.Code, f.Instr); err == nil {
				loc.Address += uint64(t.Offsets.CodeAdaptive)
				loc.Frames = []symbolize.Frame{{Function: fr.Function, SystemName: fr.Function,
					File: fr.File, Line: fr.Line, StartLine: fr.FirstLine}}
				fmt.Fprintf(&key, "%s\x00%s\x00%d\x01", fr.Function, fr.File, fr.Line)
			} else {
				r.win.pyUnresolved += rec.Count
			}
		}
		if len(loc.Frames) == 0 {
			fmt.Fprintf(&key, "0x%x\x01", loc.Address)
		}
		locs = append(locs, loc)
	}
	if rec.Python.Truncated {
		locs = append(locs, symbolize.Location{Mapping: pythonMapping,
			Frames: []symbolize.Frame{{Function: "[truncated python stack]"}}})
		key.WriteString("…")
	}
	return locs, key.String()
}

// evalFrames are the native functions of CPython's evaluation loop and
// the calls into it: a Python stack replaces them (and all outer native
// frames, which only start the interpreter or the thread).
var evalFrames = []string{
	"_PyEval_EvalFrameDefault", "_PyEval_EvalFrame", "_PyEval_Vector", "PyEval_EvalCode",
	"_PyFunction_Vectorcall", "_PyObject_VectorcallTstate", "PyObject_Vectorcall",
	"_PyObject_Call", "PyObject_Call", "method_vectorcall", "thread_run", "pymain_run_python",
	"Py_RunMain", "_PyObject_MakeTpCall", "cfunction_call",
}

func isEvalFrame(loc *symbolize.Location) bool {
	for _, f := range loc.Frames {
		for _, e := range evalFrames {
			if f.Function == e || strings.HasPrefix(f.Function, e+".") {
				return true
			}
		}
	}
	return false
}

// splicePython joins a thread's native user stack (leaf first) with its
// Python frames: native frames up to the evaluation loop (libc, the C
// function Python called), then the Python frames. Native frames are also
// cut at the first one that resolves to nothing: the interpreter and libc
// are usually built without frame pointers, and past them the frame-
// pointer walk reads garbage.
func splicePython(native, py []symbolize.Location) []symbolize.Location {
	if len(py) == 0 {
		return native
	}
	out := make([]symbolize.Location, 0, len(native)+len(py))
	for i := range native {
		loc := &native[i]
		if isEvalFrame(loc) || len(loc.Frames) == 0 || (i > 0 && loc.Mapping == nil) {
			break
		}
		out = append(out, *loc)
	}
	return append(out, py...)
}

// watchPython sends each Python stack the kernel stores to the recording
// loop, which reads its code objects at once (prefetchPython), until the
// session closes or the loop ends (done).
func (r *recorder) watchPython(done <-chan struct{}) <-chan *attach.PyStack {
	if !r.python {
		return nil
	}
	ch := make(chan *attach.PyStack, 256)
	go func() {
		defer close(ch)
		for {
			st, err := r.src.NextPythonStack()
			if err != nil {
				return
			}
			select {
			case ch <- st:
			case <-done:
				return
			}
		}
	}()
	return ch
}

// prefetchPython reads and caches the code objects of a new stack while
// its process lives.
func (r *recorder) prefetchPython(st *attach.PyStack) {
	p := r.pys[st.TGID]
	if p == nil || p.t == nil {
		return
	}
	for _, f := range st.Frames {
		_ = p.t.Prefetch(f.Code)
	}
}

// linksLibpython says whether tgid's executable needs a libpython (its
// dynamic section names one), so that the interpreter is still to be
// mapped right after exec. A static CPython is found at once instead.
func linksLibpython(tgid uint32) bool {
	f, err := elf.Open(fmt.Sprintf("/proc/%d/exe", tgid))
	if err != nil {
		return true // cannot tell: wait as before
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return false // static: nothing more will be mapped
	}
	for _, l := range libs {
		if strings.HasPrefix(l, "libpython") {
			return true
		}
	}
	return false
}
