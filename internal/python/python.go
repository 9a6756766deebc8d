// Package python finds the CPython interpreter in a process and turns the
// (code object, instruction) pairs the BPF frame walker records into
// Python function names, files and lines.
//
// The interpreter is found from /proc/PID/maps (libpython3.X.so, else the
// executable), and _PyRuntime, Py_Version and PyCode_Type from the
// binary's dynamic symbols, which even Debian's stripped python3 exports.
// Structure offsets come from a small table for 3.11 and 3.12 and from the
// interpreter's own _Py_DebugOffsets for 3.13. Process memory is read
// through /proc/PID/mem, read-only.
package python

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"blockprof/internal/elfinfo"
	"blockprof/internal/procmaps"
)

// ErrNotPython says the process runs no CPython interpreter.
var ErrNotPython = errors.New("not a CPython process")

// UnsupportedError says the process runs a CPython this package cannot
// read; the recording goes on with native stacks.
type UnsupportedError struct {
	Version string
	Reason  string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("CPython %s: %s", e.Version, e.Reason)
}

// Target is one CPython process.
type Target struct {
	PID     int
	Version string // "3.11.2"
	Path    string // the file holding the interpreter, as the process sees it
	// Runtime is the address of _PyRuntime in the process.
	Runtime uint64
	Offsets Offsets

	codeType uint64 // address of PyCode_Type, 0 if unknown
	mem      *os.File
	codes    map[uint64]*codeInfo
}

var libpython = regexp.MustCompile(`/libpython3\.\d+[a-z]*\.so`)

// Detect inspects process pid. It returns ErrNotPython when no CPython is
// mapped, and an *UnsupportedError for a CPython it cannot read.
func Detect(pid int) (*Target, error) {
	proc := fmt.Sprintf("/proc/%d", pid)
	maps, err := procmaps.Read(pid)
	if err != nil {
		return nil, fmt.Errorf("read maps of %d: %w", pid, err)
	}
	exe, _ := os.Readlink(proc + "/exe")
	exe = strings.TrimSuffix(exe, procmaps.DeletedSuffix)

	// libpython when mapped (a --enable-shared build or an embedder),
	// else the executable with libpython linked in.
	path := ""
	for _, m := range maps {
		if m.FileBacked() && libpython.MatchString(m.Path) {
			path = m.Path
			break
		}
	}
	if path == "" {
		path = exe
	}
	if path == "" {
		return nil, ErrNotPython
	}
	f, err := elf.Open(filepath.Join(proc, "root", path))
	if err != nil {
		return nil, fmt.Errorf("%w (%s: %v)", ErrNotPython, path, err)
	}
	defer f.Close()
	syms := symbols(f, "_PyRuntime", "Py_Version", "PyCode_Type")
	rtSym, ok := syms["_PyRuntime"]
	if !ok {
		// Its own section is a fallback when the symbol is hidden.
		if s := f.Section(".PyRuntime"); s != nil {
			rtSym, ok = s.Addr, true
		}
	}
	if !ok {
		return nil, ErrNotPython
	}
	var mine []procmaps.Mapping
	for _, m := range maps {
		if m.FileBacked() && m.Path == path {
			mine = append(mine, m)
		}
	}
	addr := func(v uint64) uint64 { return runtimeAddr(f, mine, v) }

	t := &Target{PID: pid, Path: path, Runtime: addr(rtSym), codes: map[uint64]*codeInfo{}}
	if t.Runtime == 0 {
		return nil, fmt.Errorf("%s: _PyRuntime not mapped in process %d", path, pid)
	}
	if v, ok := syms["PyCode_Type"]; ok {
		t.codeType = addr(v)
	}
	t.mem, err = os.Open(proc + "/mem")
	if err != nil {
		return nil, fmt.Errorf("open memory of %d: %w", pid, err)
	}
	if err := t.configure(syms, addr, path); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// configure reads the version and picks the offsets.
func (t *Target) configure(syms map[string]uint64, addr func(uint64) uint64, path string) error {
	var hex uint32
	if v, ok := syms["Py_Version"]; ok { // 3.11+
		var b [4]byte
		if err := t.read(addr(v), b[:]); err != nil {
			return fmt.Errorf("read Py_Version: %w", err)
		}
		hex = binary.LittleEndian.Uint32(b[:])
	}
	if hex == 0 {
		return &UnsupportedError{Version: versionFromPath(path), Reason: "older than 3.11 (frames are read for 3.11 to 3.13)"}
	}
	t.Version = hexVersion(hex)
	major, minor := int(hex>>24), int(hex>>16&0xff)
	if o, ok := builtin[[2]int{major, minor}]; ok {
		t.Offsets = o
	} else if major == 3 && minor >= 13 {
		b := make([]byte, debugOffsetsSize)
		if err := t.read(t.Runtime, b); err != nil {
			return fmt.Errorf("read _Py_DebugOffsets: %w", err)
		}
		o, _, err := parseDebugOffsets(b)
		if err != nil {
			return &UnsupportedError{Version: t.Version, Reason: err.Error()}
		}
		t.Offsets = o
	} else {
		return &UnsupportedError{Version: t.Version, Reason: "frames are read for 3.11 to 3.13"}
	}
	if err := t.Offsets.check(); err != nil {
		return &UnsupportedError{Version: t.Version, Reason: err.Error()}
	}
	return nil
}

func versionFromPath(p string) string {
	m := regexp.MustCompile(`python(\d+\.\d+)`).FindStringSubmatch(p)
	if m == nil {
		return "?"
	}
	return m[1]
}

// Close releases the process memory handle.
func (t *Target) Close() error {
	if t.mem == nil {
		return nil
	}
	err := t.mem.Close()
	t.mem = nil
	return err
}

// symbols looks names up in .dynsym, then .symtab.
func symbols(f *elf.File, names ...string) map[string]uint64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint64{}
	for _, get := range []func() ([]elf.Symbol, error){f.DynamicSymbols, f.Symbols} {
		syms, _ := get()
		for _, s := range syms {
			if want[s.Name] && s.Value != 0 && s.Section != elf.SHN_UNDEF {
				out[s.Name] = s.Value
			}
		}
		if len(out) == len(want) {
			break
		}
	}
	return out
}

// runtimeAddr maps a link-time address of f to where the process has it.
// An ET_EXEC binary is loaded where it was linked; a shared object or PIE
// is shifted by one bias, which the mapping of its first PT_LOAD segment
// gives. (Matching other segments by file offset is ambiguous: a page can
// hold the end of one segment and the start of the next, mapped twice.)
func runtimeAddr(f *elf.File, maps []procmaps.Mapping, v uint64) uint64 {
	if f.Type == elf.ET_EXEC {
		return v
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		const page = 0xfff
		for _, m := range maps {
			if m.Offset == p.Off&^page {
				bias, _ := elfinfo.LoadBias(p, m.Start, m.Offset)
				return bias + v
			}
		}
		return 0
	}
	return 0
}

// read fills b from process memory at addr.
func (t *Target) read(addr uint64, b []byte) error {
	if t.mem == nil {
		return errors.New("target closed")
	}
	if addr == 0 || addr+uint64(len(b)) < addr {
		return fmt.Errorf("bad address 0x%x", addr)
	}
	n, err := t.mem.ReadAt(b, int64(addr))
	if n == len(b) {
		return nil
	}
	if err == nil {
		err = errors.New("short read")
	}
	return fmt.Errorf("read 0x%x: %w", addr, err)
}

func (t *Target) u64(addr uint64) (uint64, error) {
	var b [8]byte
	err := t.read(addr, b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

// cString trims at the first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
