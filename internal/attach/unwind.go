package attach

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

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

// procMapping is one executable file mapping from /proc/PID/maps.
type procMapping struct {
	start, end, off uint64
	dev, inode      string
	path            string
}

func readExecMappings(pid int) ([]procMapping, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	var out []procMapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[1]) < 3 || f[1][2] != 'x' || !strings.HasPrefix(f[5], "/") || f[4] == "0" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if !ok || err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, procMapping{start: start, end: end, off: off, dev: f[3], inode: f[4],
			path: strings.Join(f[5:], " ")})
	}
	return out, sc.Err()
}

// openMapped opens a mapped file the way the process sees it: through
// map_files (works for deleted files), else through its root.
func openMapped(pid int, m procMapping) (*elf.File, error) {
	f, err := elf.Open(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.start, m.end))
	if err == nil {
		return f, nil
	}
	return elf.Open(fmt.Sprintf("/proc/%d/root%s", pid, m.path))
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
		key := buildID(ef)
		goCode := isGo(ef)
		ef.Close()
		if goCode {
			// Go keeps frame pointers on every function, and its
			// goroutine stacks end at runtime.goexit, which its CFI does
			// not mark as outermost: frame pointers end the walk
			// cleanly, tables would run past the end.
			ms = append(ms, unwMapping{Start: m.start, End: m.end, Bias: bias})
			continue
		}
		if !ok {
			u.count(func(s *UnwindStats) { s.FilesFailed++ })
			continue
		}
		if key == "" {
			key = "inode:" + m.dev + ":" + m.inode
		}
		fr := u.file(key, func() (*elf.File, error) { return openMapped(pid, m) })
		ms = append(ms, unwMapping{Start: m.start, End: m.end, Bias: bias, RowStart: fr.start, RowCount: fr.count})
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

// isGo reports a Go binary (its pclntab section, or its build info).
func isGo(f *elf.File) bool {
	return f.Section(".gopclntab") != nil || f.Section(".go.buildinfo") != nil
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

// loadBias is process address - ELF vaddr for the executable PT_LOAD
// segment that the mapping's file offset falls in.
func loadBias(f *elf.File, m procMapping) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		segStart := p.Off &^ 0xfff
		if m.off >= segStart && m.off < p.Off+p.Filesz {
			vaddr := p.Vaddr - p.Off + m.off
			return m.start - vaddr, true
		}
	}
	return 0, false
}

// buildID is the GNU build ID in hex, "" without one.
func buildID(f *elf.File) string {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE || s.Size > 1<<16 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for len(data) >= 12 {
			namesz := uint64(f.ByteOrder.Uint32(data))
			descsz := uint64(f.ByteOrder.Uint32(data[4:]))
			typ := f.ByteOrder.Uint32(data[8:])
			data = data[12:]
			nameEnd := (namesz + 3) &^ 3
			descEnd := nameEnd + (descsz+3)&^3
			if nameEnd > uint64(len(data)) || descEnd > uint64(len(data)) {
				break
			}
			if typ == 3 && string(data[:namesz]) == "GNU\x00" {
				return hex.EncodeToString(data[nameEnd : nameEnd+descsz])
			}
			data = data[descEnd:]
		}
	}
	return ""
}
