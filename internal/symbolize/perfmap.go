package symbolize

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Perf maps: JIT runtimes (node --perf-basic-prof, python -X perf, Java's
// Compiler.perfmap) write "START SIZE NAME" lines (hex, with or without
// 0x) to /tmp/perf-PID.map for code they generate in anonymous memory.
// The file outlives its process, so one is used only if it was written
// since the process started (a reused PID's old file is ignored).

type perfSym struct {
	start, end uint64
	name       string
}

// perfMap is a parsed perf map, sorted by start; where entries overlap
// (code replaced in place) the later line wins.
type perfMap struct {
	syms []perfSym
}

// maxPerfMap bounds how much of a perf map is read.
const maxPerfMap = 256 << 20

// parsePerfMap parses a perf map. Lines that do not parse are skipped (a
// runtime may be writing the last one); it never fails.
func parsePerfMap(data []byte) *perfMap {
	var syms []perfSym
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		f := strings.SplitN(strings.TrimSpace(string(line)), " ", 3)
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(strings.TrimPrefix(f[0], "0x"), 16, 64)
		size, err2 := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
		name := strings.TrimSpace(f[2])
		if err1 != nil || err2 != nil || size == 0 || start+size < start || name == "" {
			continue
		}
		syms = append(syms, perfSym{start, start + size, name})
	}
	// Stable: among equal starts the later line stays later, and lookup
	// takes the last candidate.
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].start < syms[j].start })
	return &perfMap{syms: syms}
}

// lookup returns the name of the symbol holding a, or "".
func (m *perfMap) lookup(a uint64) string {
	i := sort.Search(len(m.syms), func(i int) bool { return m.syms[i].start > a })
	// Walk back over a few earlier starts: a later, overlapping entry may
	// hold a even if the nearest start does not.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		if s := &m.syms[j]; a >= s.start && a < s.end {
			return s.name
		}
	}
	return ""
}

// perfMapFile tracks one process's perf map, re-read when it grows.
type perfMapFile struct {
	mu      sync.Mutex
	path    string
	started time.Time // process start; older files belong to another process
	size    int64
	mtime   time.Time
	m       *perfMap
}

func newPerfMapFile(procDir string, pid int) *perfMapFile {
	started, err := processStart(procDir)
	if err != nil {
		return nil
	}
	return &perfMapFile{path: filepath.Join(procDir, "root", "tmp", fmt.Sprintf("perf-%d.map", pid)), started: started}
}

// get returns the current map, or nil when there is none for this process.
func (f *perfMapFile) get() *perfMap {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		// The process (and its /proc/PID/root) may be gone: try the
		// host's /tmp, where a non-containerized process writes it.
		fi, err = os.Stat(filepath.Join("/tmp", filepath.Base(f.path)))
		if err != nil {
			return f.m
		}
		f.path = filepath.Join("/tmp", filepath.Base(f.path))
	}
	// Written before this process started: a previous owner of the PID.
	if fi.ModTime().Before(f.started) {
		return nil
	}
	if f.m != nil && fi.Size() == f.size && fi.ModTime().Equal(f.mtime) {
		return f.m
	}
	if fi.Size() > maxPerfMap {
		return f.m
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return f.m
	}
	f.m, f.size, f.mtime = parsePerfMap(data), fi.Size(), fi.ModTime()
	return f.m
}

// processStart is when the process started, from /proc/PID/stat field 22
// (clock ticks since boot) and the boot time.
func processStart(procDir string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return time.Time{}, errors.New("bad stat")
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64) // field 22 overall
	if err != nil {
		return time.Time{}, err
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, err
	}
	const hz = 100 // USER_HZ, fixed on Linux
	since := time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/hz
	// Ticks are 10 ms: allow one, so a file written in the first tick counts.
	return time.Now().Add(-since).Add(-10 * time.Millisecond), nil
}
