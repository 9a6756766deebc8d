package symbolize

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"blockprof/internal/procmaps"
)

// Process holds the executable mappings of one process, with their files
// already open, so it can be symbolized after the process has exited.
type Process struct {
	s       *Symbolizer
	pid     int
	procDir string

	mu      sync.RWMutex
	regions []region // sorted by start, not overlapping
	main    *Mapping
	exited  bool
	perf    *perfMapFile // JIT symbols, nil if the process's start is unknown
}

type region struct {
	m   *Mapping
	obj *object // nil when nothing can be resolved in it
	key regionKey
}

type regionKey struct {
	start, end, off, ino uint64
	path                 string
}

// maxVDSOSize bounds the [vdso] image read from the target's memory.
const maxVDSOSize = 1 << 20

// Attach reads the memory map of pid and opens every file mapped
// executable, through /proc/PID/root (so container files resolve) or
// /proc/PID/map_files. The error wraps os.ErrNotExist when there is no
// such process.
func (s *Symbolizer) Attach(pid int) (*Process, error) {
	p := &Process{s: s, pid: pid, procDir: filepath.Join(s.root, "proc", strconv.Itoa(pid))}
	entries, err := p.readMaps()
	if err != nil {
		return nil, fmt.Errorf("attach %d: %w", pid, err)
	}
	p.regions, p.main = p.build(entries, nil)
	p.perf = newPerfMapFile(p.procDir, pid)
	return p, nil
}

// Forked returns the Process of pid, a child p forked that has not
// exec'd: until it does, it has p's mappings, so nothing is read (the
// child may be gone already). Refresh reads its own.
func (p *Process) Forked(pid int) *Process {
	p.mu.RLock()
	defer p.mu.RUnlock()
	c := &Process{s: p.s, pid: pid, procDir: filepath.Join(p.s.root, "proc", strconv.Itoa(pid)),
		regions: p.regions, main: p.main} // never changed in place: shared
	c.perf = newPerfMapFile(c.procDir, pid)
	return c
}

func (p *Process) readMaps() ([]procmaps.Mapping, error) {
	data, err := os.ReadFile(filepath.Join(p.procDir, "maps"))
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			err = fmt.Errorf("%w: %w", os.ErrNotExist, err)
		}
		return nil, err
	}
	return procmaps.Parse(data)
}

// Refresh re-reads the memory map after dlopen or exec. Regions that are
// gone but overlap nothing new are kept, so addresses captured before a
// dlclose still resolve. When the process has exited the old map stays,
// Exited turns true and Refresh returns nil.
func (p *Process) Refresh() error {
	entries, err := p.readMaps()
	if err == nil && len(entries) == 0 {
		// A zombie's map reads empty.
		err = os.ErrNotExist
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			p.mu.Lock()
			p.exited = true
			p.mu.Unlock()
			return nil
		}
		return fmt.Errorf("refresh %d: %w", p.pid, err)
	}
	p.mu.RLock()
	old := p.regions
	p.mu.RUnlock()
	regions, main := p.build(entries, old)
	// Keep old regions nothing new overlaps.
	for _, o := range old {
		i, _ := slices.BinarySearchFunc(regions, o.m.Start, func(r region, a uint64) int {
			switch {
			case r.m.Start < a:
				return -1
			case r.m.Start > a:
				return 1
			}
			return 0
		})
		overlaps := (i < len(regions) && regions[i].m.Start < o.m.Limit) ||
			(i > 0 && regions[i-1].m.Limit > o.m.Start)
		if !overlaps {
			regions = slices.Insert(regions, i, o)
		}
	}
	p.mu.Lock()
	p.regions = regions
	if main != nil {
		p.main = main
	}
	p.mu.Unlock()
	return nil
}

// Exited reports whether Refresh found the process gone.
func (p *Process) Exited() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.exited
}

// Main returns the mapping of the main executable's code, or nil.
func (p *Process) Main() *Mapping {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.main
}

// build turns maps entries into regions, reusing the old region (and
// *Mapping) of every unchanged entry.
func (p *Process) build(entries []procmaps.Mapping, old []region) ([]region, *Mapping) {
	prev := make(map[regionKey]region, len(old))
	for _, r := range old {
		prev[r.key] = r
	}
	exe := ""
	if l, err := os.Readlink(filepath.Join(p.procDir, "exe")); err == nil {
		exe = strings.TrimSuffix(l, procmaps.DeletedSuffix)
	}
	var regions []region
	var main, firstFile *Mapping
	for i := range entries {
		e := &entries[i]
		if !e.Exec() || e.End <= e.Start {
			continue
		}
		k := regionKey{e.Start, e.End, e.Offset, e.Inode, e.Path}
		r, ok := prev[k]
		if !ok {
			r = p.newRegion(e)
			r.key = k
		}
		if n := len(regions); n > 0 && regions[n-1].m.Limit > r.m.Start {
			continue // maps is sorted and disjoint; ignore anything else
		}
		regions = append(regions, r)
		if e.FileBacked() {
			if firstFile == nil {
				firstFile = r.m
			}
			if main == nil && exe != "" && e.Path == exe {
				main = r.m
			}
		}
	}
	if main == nil {
		main = firstFile
	}
	return regions, main
}

func (p *Process) newRegion(e *procmaps.Mapping) region {
	m := &Mapping{Start: e.Start, Limit: e.End, Offset: e.Offset, File: e.Path}
	var obj *object
	switch {
	case e.FileBacked():
		obj = p.openFile(e)
	case e.Path == "[vdso]":
		obj = p.openVDSO(e)
	case e.Path == "":
		m.File = "[anon]"
	}
	if obj != nil {
		m.BuildID = obj.buildID
		m.HasFunctions, m.HasFilenames = obj.hasFuncs, obj.hasLines
		m.HasLineNumbers, m.HasInlineFrames = obj.hasLines, obj.hasInline
	}
	return region{m: m, obj: obj}
}

// openFile opens a mapped file as the target sees it, falling back to
// map_files when the path is gone or now names another file.
func (p *Process) openFile(e *procmaps.Mapping) *object {
	src := fileSource{path: e.Path, procRoot: filepath.Join(p.procDir, "root")}
	if !e.Deleted {
		if f, err := os.Open(filepath.Join(src.procRoot, e.Path)); err == nil {
			if sameInode(f, e.Inode) {
				if o, err := p.s.open(f, src); err == nil {
					return o
				}
				return nil
			}
			f.Close()
		}
	}
	mf := filepath.Join(p.procDir, "map_files", fmt.Sprintf("%x-%x", e.Start, e.End))
	f, err := os.Open(mf)
	if err != nil {
		return nil
	}
	o, err := p.s.open(f, src)
	if err != nil {
		return nil
	}
	return o
}

func sameInode(f *os.File, ino uint64) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || st.Ino == ino
}

// openVDSO reads the [vdso] image out of the target's memory; it is an ELF
// file with a dynamic symbol table.
func (p *Process) openVDSO(e *procmaps.Mapping) *object {
	size := e.End - e.Start
	if size > maxVDSOSize {
		return nil
	}
	f, err := os.Open(filepath.Join(p.procDir, "mem"))
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, size)
	if n, err := f.ReadAt(buf, int64(e.Start)); n != len(buf) && err != nil {
		return nil
	}
	o, err := p.s.openReader(bytes.NewReader(buf), nil, fileKey{}, false, fileSource{path: "[vdso]"})
	if err != nil {
		return nil
	}
	return o
}

// Locations resolves user addresses of the process. Every address in one
// region gets the same *Mapping. Frames slices are shared between
// Locations of equal addresses: treat them as read-only.
func (p *Process) Locations(addrs []uint64) []Location {
	p.mu.RLock()
	regions := p.regions
	p.mu.RUnlock()
	locs := make([]Location, len(addrs))
	var hit, miss int64
	var perf *perfMap
	perfLoaded := false
	for i, a := range addrs {
		locs[i].Address = a
		r := findRegion(regions, a)
		if r != nil {
			locs[i].Mapping = r.m
			if r.obj != nil {
				if pc, ok := r.obj.fileAddr(r.m, a); ok {
					locs[i].Frames = r.obj.lookup(pc)
				}
			}
		}
		// JIT code: anonymous memory, or memory mapped after the last
		// look at the maps.
		if r == nil || r.obj == nil {
			if !perfLoaded {
				perf, perfLoaded = p.perf.get(), true
			}
			if perf != nil {
				if name := perf.lookup(a); name != "" {
					locs[i].Frames = []Frame{{Function: name, SystemName: name}}
				}
			}
		}
		if len(locs[i].Frames) > 0 {
			hit++
		} else {
			miss++
		}
	}
	p.s.resolved.Add(hit)
	p.s.unresolved.Add(miss)
	return locs
}

func findRegion(regions []region, a uint64) *region {
	lo, hi := 0, len(regions)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if regions[mid].m.Start <= a {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return nil
	}
	r := &regions[lo-1]
	if a >= r.m.Limit {
		return nil
	}
	return r
}
