// Package procmaps reads a process's memory map, /proc/PID/maps: the one
// parser every package that looks at mappings uses.
package procmaps

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End, Offset uint64
	Perms              string // e.g. "r-xp"
	DevMajor, DevMinor uint32
	Inode              uint64
	Path               string // "" for anonymous regions; " (deleted)" removed
	Deleted            bool
}

// Exec reports whether the mapping is executable.
func (e *Mapping) Exec() bool { return len(e.Perms) >= 3 && e.Perms[2] == 'x' }

// FileBacked reports whether Path names a file rather than a pseudo region
// such as "[heap]" or "[vdso]".
func (e *Mapping) FileBacked() bool {
	return e.Inode != 0 && strings.HasPrefix(e.Path, "/")
}

// DeletedSuffix is what the kernel appends to the path of a deleted file,
// in maps and in /proc/PID/exe.
const DeletedSuffix = " (deleted)"

// Read reads and parses /proc/PID/maps.
func Read(pid int) ([]Mapping, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse parses the contents of /proc/PID/maps. It returns nil and an
// error on the first malformed line, so a half-parsed map is never used.
func Parse(data []byte) ([]Mapping, error) {
	var out []Mapping
	for lineno := 1; len(data) > 0; lineno++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := parseLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("maps line %d: %w", lineno, err)
		}
		out = append(out, e)
	}
	if out == nil {
		out = []Mapping{}
	}
	return out, nil
}

// nextField splits off the next space-separated field.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

func parseLine(line string) (Mapping, error) {
	var e Mapping
	rng, rest := nextField(line)
	perms, rest := nextField(rest)
	off, rest := nextField(rest)
	dev, rest := nextField(rest)
	ino, rest := nextField(rest)
	if ino == "" {
		return e, fmt.Errorf("too few fields in %q", line)
	}
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return e, fmt.Errorf("bad address range %q", rng)
	}
	var err error
	if e.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return e, fmt.Errorf("bad start address: %w", err)
	}
	if e.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return e, fmt.Errorf("bad end address: %w", err)
	}
	if e.End < e.Start {
		return e, fmt.Errorf("end %#x before start %#x", e.End, e.Start)
	}
	if len(perms) != 4 {
		return e, fmt.Errorf("bad permissions %q", perms)
	}
	e.Perms = perms
	if e.Offset, err = strconv.ParseUint(off, 16, 64); err != nil {
		return e, fmt.Errorf("bad offset: %w", err)
	}
	maj, min, ok := strings.Cut(dev, ":")
	if !ok {
		return e, fmt.Errorf("bad device %q", dev)
	}
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(min, 16, 32)
	if err1 != nil || err2 != nil {
		return e, fmt.Errorf("bad device %q", dev)
	}
	e.DevMajor, e.DevMinor = uint32(ma), uint32(mi)
	if e.Inode, err = strconv.ParseUint(ino, 10, 64); err != nil {
		return e, fmt.Errorf("bad inode: %w", err)
	}
	// The path is the rest of the line and may itself contain spaces.
	path := strings.TrimLeft(rest, " \t")
	if p, ok := strings.CutSuffix(path, DeletedSuffix); ok && e.Inode != 0 {
		path, e.Deleted = p, true
	}
	e.Path = path
	return e, nil
}
