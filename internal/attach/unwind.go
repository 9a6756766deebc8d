package attach

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cilium/ebpf"

	"blockprof/internal/elfinfo"
	"blockprof/internal/procmaps"
	"blockprof/internal/unwind"
)

// Layouts of bpf/include/unwind.h; TestUnwindLayout checks them against
// the object's BTF.
type unwRow struct {
	PC      uint32
	CFAOff8 uint16
	RBPOff8 int8
	Kind    uint8
}

type unwMapping struct {
	Start, End, Bias   uint64
	RowStart, RowCount uint32
}

const unwMaxMappings = 128 // UNW_MAX_MAPPINGS

type unwMappingKey struct {
	TGID, Idx uint32
}

// UnwindStats counts what UnwindTables loaded and what it could not.
type UnwindStats struct {
	Files           int // files whose rows are loaded
	Rows            int // rows loaded
	UnsupportedRows int // rows loaded as unsupported (incl. offsets that do not fit 8 bytes)
	FilesFailed     int // no table: frame pointers only (error, no CFI, > 4 GiB)
	FilesNoRoom     int // table did not fit in the rows map
	MappingsDropped int // beyond UNW_MAX_MAPPINGS in one process
}

// UnwindTables fills the unw_rows, unw_procs and unw_mappings maps of
// bpf/include/unwind.h.
// Rows are appended per file (by build ID) and shared by every process
// mapping the file; they are never removed, so a long run that sees many
// distinct files eventually falls back to frame pointers for new ones.
type UnwindTables struct {
	rows, procs, mappings *ebpf.Map
	cache                 *unwind.Cache

	mu    sync.Mutex
	files map[string]fileRows  // by build ID, or dev:inode without one
	lists map[int][]unwMapping // the mapping list written per process
	next  uint32
	stats UnwindStats
}

type fileRows struct {
	start, count uint32
}

// NewUnwindTables loads into the given maps (unw_rows, unw_procs,
// unw_mappings).
func NewUnwindTables(rows, procs, mappings *ebpf.Map) *UnwindTables {
	return &UnwindTables{rows: rows, procs: procs, mappings: mappings, cache: unwind.NewCache(0),
		files: map[string]fileRows{}, lists: map[int][]unwMapping{}}
}

// Stats returns the counters so far.
func (u *UnwindTables) Stats() UnwindStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

// readExecMappings lists pid's executable file mappings.
func readExecMappings(pid int) ([]procmaps.Mapping, error) {
	all, err := procmaps.Read(pid)
	if err != nil {
		return nil, err
	}
	var out []procmaps.Mapping
	for _, m := range all {
		if m.Exec() && m.FileBacked() {
			out = append(out, m)
		}
	}
	return out, nil
}

// openMapped opens a mapped file the way the process sees it: through
// map_files (works for deleted files), else through its root.
func openMapped(pid int, m procmaps.Mapping) (*elf.File, error) {
	f, err := elf.Open(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End))
	if err == nil || m.Deleted {
		return f, err // a deleted file's path names another file, if any
	}
	return elf.Open(fmt.Sprintf("/proc/%d/root%s", pid, m.Path))
}

// AddProcess loads tables for every executable mapping of pid (files
// already loaded are reused) and replaces its mapping list. Mappings whose
// file has no usable table are still listed, so the unwinder knows to use
// frame pointers there.
func (u *UnwindTables) AddProcess(pid int) error {
	maps, err := readExecMappings(pid)
	if err != nil {
		return err
	}
	var ms []unwMapping
	for _, m := range maps {
		ef, err := openMapped(pid, m)
		if err != nil {
			u.count(func(s *UnwindStats) { s.FilesFailed++ })
			continue
		}
		bias, ok := loadBias(ef, m)
		key, _ := elfinfo.BuildIDs(ef)
		goCode := elfinfo.IsGo(ef)
		ef.Close()
		if goCode {
			// Go keeps frame pointers on every function, and its
			// goroutine stacks end at runtime.goexit, which its CFI does
			// not mark as outermost: frame pointers end the walk
			// cleanly, tables would run past the end.
			ms = append(ms, unwMapping{Start: m.Start, End: m.End, Bias: bias})
			continue
		}
		if !ok {
			u.count(func(s *UnwindStats) { s.FilesFailed++ })
			continue
		}
		if key == "" {
			key = fmt.Sprintf("inode:%x:%x:%d", m.DevMajor, m.DevMinor, m.Inode)
		}
		fr := u.file(key, func() (*elf.File, error) { return openMapped(pid, m) })
		ms = append(ms, unwMapping{Start: m.Start, End: m.End, Bias: bias, RowStart: fr.start, RowCount: fr.count})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Start < ms[j].Start })
	if len(ms) > unwMaxMappings {
		u.count(func(s *UnwindStats) { s.MappingsDropped += len(ms) - unwMaxMappings })
		ms = ms[:unwMaxMappings]
	}
	// Hide the process while its list changes: a walk meanwhile uses
	// frame pointers rather than a half-written list.
	if err := u.RemoveProcess(pid); err != nil {
		return err
	}
	for i, m := range ms {
		if err := u.mappings.Put(unwMappingKey{uint32(pid), uint32(i)}, m); err != nil {
			return err
		}
	}
	u.mu.Lock()
	u.lists[pid] = ms
	u.mu.Unlock()
	return u.procs.Put(uint32(pid), uint32(len(ms)))
}

// RemoveProcess forgets pid's mappings (its files' rows stay loaded).
func (u *UnwindTables) RemoveProcess(pid int) error {
	err := u.procs.Delete(uint32(pid))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	u.mu.Lock()
	n := len(u.lists[pid])
	delete(u.lists, pid)
	u.mu.Unlock()
	for i := 0; i < n; i++ {
		err := u.mappings.Delete(unwMappingKey{uint32(pid), uint32(i)})
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// NeededTable says whether a stack of pid walked with frame pointers
// before its tables were loaded went through code that has a table: only
// then could the walk differ from a walk with tables. Go code and code
// without CFI are walked by frame pointers either way. known is false
// while pid's mappings are not loaded (it may have exited first).
func (u *UnwindTables) NeededTable(pid uint32, pcs []uint64) (needed, known bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ms, ok := u.lists[int(pid)]
	if !ok {
		return false, false
	}
	for i, pc := range pcs {
		if i > 0 {
			pc-- // a return address: the call is before it
		}
		j := sort.Search(len(ms), func(j int) bool { return ms[j].End > pc })
		if j < len(ms) && ms[j].Start <= pc && ms[j].RowCount > 0 {
			return true, true
		}
	}
	return false, true
}

func (u *UnwindTables) count(f func(*UnwindStats)) {
	u.mu.Lock()
	f(&u.stats)
	u.mu.Unlock()
}

// file returns the rows of the file with key, loading them the first
// time; count 0 means no table.
func (u *UnwindTables) file(key string, open func() (*elf.File, error)) fileRows {
	u.mu.Lock()
	defer u.mu.Unlock()
	if fr, ok := u.files[key]; ok {
		return fr
	}
	fr := fileRows{}
	tab, err := u.cache.Get(key, open)
	if err != nil || len(tab.Rows) == 0 {
		u.stats.FilesFailed++
		u.files[key] = fr
		return fr
	}
	rows, unsupported, ok := encodeRows(tab.Rows)
	if !ok {
		u.stats.FilesFailed++
		u.files[key] = fr
		return fr
	}
	if uint64(u.next)+uint64(len(rows)) > uint64(u.rows.MaxEntries()) {
		u.stats.FilesNoRoom++
		u.files[key] = fr
		return fr
	}
	if err := putRows(u.rows, u.next, rows); err != nil {
		u.stats.FilesFailed++
		u.files[key] = fr
		return fr
	}
	fr = fileRows{start: u.next, count: uint32(len(rows))}
	u.next += uint32(len(rows))
	u.files[key] = fr
	u.stats.Files++
	u.stats.Rows += len(rows)
	u.stats.UnsupportedRows += unsupported
	return fr
}

// encodeRows packs rows into the 8-byte BPF layout. Offsets that do not
// fit become unsupported (never rounded); files above 4 GiB of address
// space are refused (ok false).
func encodeRows(rows []unwind.Row) (out []unwRow, unsupported int, ok bool) {
	out = make([]unwRow, 0, len(rows))
	for _, r := range rows {
		if r.PC > 0xffffffff {
			return nil, 0, false
		}
		e := unwRow{PC: uint32(r.PC)}
		cfa, rbp := uint8(r.CFA), uint8(r.RBP)
		switch r.CFA {
		case unwind.CFARSP, unwind.CFARBP, unwind.CFAPLT:
			if r.CFAOff < 0 || r.CFAOff%8 != 0 || r.CFAOff/8 > 0xffff {
				cfa = uint8(unwind.CFAUnsupported)
			} else {
				e.CFAOff8 = uint16(r.CFAOff / 8)
			}
		}
		if r.RBP == unwind.RBPOffset {
			if r.RBPOff%8 != 0 || r.RBPOff/8 < -128 || r.RBPOff/8 > 127 {
				rbp = uint8(unwind.RBPUnsupported)
			} else {
				e.RBPOff8 = int8(r.RBPOff / 8)
			}
		}
		if cfa == uint8(unwind.CFAUnsupported) {
			e.CFAOff8 = 0
		}
		e.Kind = cfa | rbp<<4
		if cfa == uint8(unwind.CFAUnsupported) || rbp == uint8(unwind.RBPUnsupported) {
			unsupported++
		}
		if n := len(out); n > 0 && out[n-1].Kind == e.Kind && out[n-1].CFAOff8 == e.CFAOff8 && out[n-1].RBPOff8 == e.RBPOff8 {
			continue
		}
		out = append(out, e)
	}
	return out, unsupported, true
}

// putRows writes rows at index start, in batches where the kernel can.
func putRows(m *ebpf.Map, start uint32, rows []unwRow) error {
	const batch = 1 << 14
	keys := make([]uint32, 0, batch)
	for i := 0; i < len(rows); i += batch {
		chunk := rows[i:min(i+batch, len(rows))]
		keys = keys[:0]
		for k := range chunk {
			keys = append(keys, start+uint32(i+k))
		}
		_, err := m.BatchUpdate(keys, chunk, nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for k := range chunk {
				if err := m.Put(keys[k], chunk[k]); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// loadBias is process address - ELF vaddr, from the executable PT_LOAD
// segment that the mapping's file offset falls in.
func loadBias(f *elf.File, m procmaps.Mapping) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		if bias, ok := elfinfo.LoadBias(p, m.Start, m.Offset); ok {
			return bias, true
		}
	}
	return 0, false
}
