package goroutines

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"strings"

	"blockprof/internal/symbolize/gopclntab"
)

// Offsets are where a Go version keeps what the programs read, in bytes.
type Offsets struct {
	GoID, SchedLink                  uint32 // runtime.g
	PollFd, PollRg, PollWg, PollSelf uint32 // runtime.pollDesc
}

// Binary is what recording a Go program's goroutines needs from its
// executable.
type Binary struct {
	GoVersion string // "go1.26.8"
	Offsets   Offsets
	// Source says where the offsets came from: "DWARF" or "table go1.26".
	Source string
	// Reasons are the version's wait reasons, indexed by waitReason value.
	Reasons []string
	IOWait  uint32 // waitReasonIOWait's value
	// Funcs are the file offsets of the hooked runtime functions.
	Funcs map[string]uint64
}

// Errors of Inspect.
var (
	ErrNotGo          = errors.New("not a Go binary")
	ErrUnknownVersion = errors.New("Go version without known goroutine offsets")
)

// The runtime functions hooked (see bpf/goroutines.bpf.c).
const (
	fnPark   = "runtime.gopark"
	fnReady  = "runtime.ready"
	fnInject = "runtime.injectglist"
	fnRun    = "runtime.execute"
)

// Inspect reads a Go executable's version (build info survives stripping),
// its runtime offsets (DWARF when present, else the per-version table),
// its wait reasons and the file offsets of the hooked functions (from the
// pclntab, which survives stripping too). It refuses versions outside the
// table rather than guess: wrong offsets would read wrong memory.
func Inspect(path string) (*Binary, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNotGo)
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: %s: goroutines are read on x86-64 only", path, f.Machine)
	}
	b := &Binary{GoVersion: bi.GoVersion}
	minor := minorVersion(bi.GoVersion)
	reasons, ok := waitReasonTable[minor]
	if !ok {
		return nil, fmt.Errorf("%s: %s: %w (known: go1.21 to go1.26)", path, bi.GoVersion, ErrUnknownVersion)
	}
	b.Reasons = reasons
	b.IOWait = uint32(indexOf(reasons, "IO wait"))
	if d, err := f.DWARF(); err == nil {
		off, consts, derr := fromDWARF(d)
		if derr == nil {
			// The table's reasons must match the binary's constants, or
			// the names would be wrong.
			if consts["waitReasonIOWait"] != int64(b.IOWait) || len(consts) != len(reasons) {
				return nil, fmt.Errorf("%s: %s: wait reasons differ from the table's (%d constants, IO wait = %d): %w",
					path, bi.GoVersion, len(consts), consts["waitReasonIOWait"], ErrUnknownVersion)
			}
			b.Offsets, b.Source = off, "DWARF"
		}
	}
	if b.Source == "" {
		b.Offsets, b.Source = offsetTable[minor], "table "+minor
	}
	tab, err := gopclntab.Open(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	entries := tab.Entries(fnPark, fnReady, fnInject, fnRun)
	b.Funcs = map[string]uint64{}
	for name, va := range entries {
		off, ok := fileOffset(f, va)
		if !ok {
			return nil, fmt.Errorf("%s: %s at %#x is in no segment", path, name, va)
		}
		b.Funcs[name] = off + probeSkip(f, off)
	}
	for _, name := range []string{fnPark, fnRun} {
		if _, ok := b.Funcs[name]; !ok {
			return nil, fmt.Errorf("%s: no %s in the pclntab", path, name)
		}
	}
	return b, nil
}

// minorVersion turns "go1.26.8" (or "go1.26rc1") into "go1.26".
func minorVersion(v string) string {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return v
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	return "go1." + rest[:end]
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// probeSkip is how far into a function its uprobe goes: past the stack
// check's CMPQ SP, 0x10(R14) when a JBE follows, so the probe sits on the
// branch. The kernel emulates a branch under a uprobe but must single-step
// the CMPQ out of line: a second trap per hit, which on this VM more than
// doubled each hook's cost (README, Cost). The registers the programs
// read (R14, SP, BP, AX, BX, CX) are the same at both places.
func probeSkip(f *elf.File, off uint64) uint64 {
	var code [6]byte
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || off < p.Off || off+uint64(len(code)) > p.Off+p.Filesz {
			continue
		}
		if _, err := p.ReadAt(code[:], int64(off-p.Off)); err != nil {
			return 0
		}
		cmp := code[0] == 0x49 && code[1] == 0x3b && code[2] == 0x66 && code[3] == 0x10
		jbe := code[4] == 0x76 || (code[4] == 0x0f && code[5] == 0x86)
		if cmp && jbe {
			return 4
		}
		return 0
	}
	return 0
}

// fileOffset maps a virtual address to its offset in the file, through
// the executable PT_LOAD segment holding it (what a uprobe is placed by).
func fileOffset(f *elf.File, va uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && va >= p.Vaddr && va < p.Vaddr+p.Filesz {
			return va - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}

// fromDWARF reads the offsets and the waitReason constants (name without
// "runtime." -> value) from a binary's DWARF.
func fromDWARF(d *dwarf.Data) (Offsets, map[string]int64, error) {
	want := map[string]map[string]*uint32{}
	var o Offsets
	want["runtime.g"] = map[string]*uint32{"goid": &o.GoID, "schedlink": &o.SchedLink}
	want["runtime.pollDesc"] = map[string]*uint32{"fd": &o.PollFd, "rg": &o.PollRg, "wg": &o.PollWg, "self": &o.PollSelf}
	found := 0
	consts := map[string]int64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return o, nil, err
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		switch {
		case e.Tag == dwarf.TagConstant && strings.HasPrefix(name, "runtime.waitReason"):
			if v, ok := e.Val(dwarf.AttrConstValue).(int64); ok {
				consts[strings.TrimPrefix(name, "runtime.")] = v
			}
		case e.Tag == dwarf.TagStructType && want[name] != nil && e.Children:
			fields := want[name]
			delete(want, name)
			for {
				c, err := r.Next()
				if err != nil {
					return o, nil, err
				}
				if c == nil || c.Tag == 0 {
					break
				}
				cn, _ := c.Val(dwarf.AttrName).(string)
				if p := fields[cn]; p != nil {
					if v, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok {
						*p = uint32(v)
						found++
					}
				}
				if c.Children {
					r.SkipChildren()
				}
			}
		case e.Children && e.Tag != dwarf.TagCompileUnit:
			r.SkipChildren()
		}
	}
	if found != 6 {
		return o, nil, fmt.Errorf("DWARF has %d of the 6 runtime fields", found)
	}
	if len(consts) == 0 {
		return o, nil, errors.New("DWARF has no waitReason constants")
	}
	return o, consts, nil
}
