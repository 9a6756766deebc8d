package symbolize

import (
	"debug/elf"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// findDebugFile looks for o's separate debug file: by build ID under each
// debug directory, then by .gnu_debuglink next to the file, in its .debug
// subdirectory and under each debug directory, checking the CRC32. It
// attaches the first match to o.
func (s *Symbolizer) findDebugFile(o *object, src fileSource) bool {
	var roots []string // directories holding .build-id trees
	for _, d := range s.debugDirs {
		roots = append(roots, filepath.Join(s.root, d))
		if src.procRoot != "" && src.procRoot != s.root {
			// The container's own debug files.
			roots = append(roots, filepath.Join(src.procRoot, d))
		}
	}
	if id := o.gnuID; len(id) > 2 {
		for _, r := range roots {
			p := filepath.Join(r, ".build-id", id[:2], id[2:]+".debug")
			if s.tryDebugFile(o, p, func(d *object) bool { return d.gnuID == id }) {
				return true
			}
		}
	}
	if o.debuglink == "" || src.path == "" || filepath.Base(o.debuglink) != o.debuglink {
		return false
	}
	dir := filepath.Dir(src.path)
	procRoot := src.procRoot
	if procRoot == "" {
		procRoot = s.root
	}
	cands := []string{
		filepath.Join(procRoot, dir, o.debuglink),
		filepath.Join(procRoot, dir, ".debug", o.debuglink),
	}
	for _, r := range roots {
		cands = append(cands, filepath.Join(r, dir, o.debuglink))
	}
	self := filepath.Join(procRoot, src.path)
	for _, p := range cands {
		if p == self {
			continue
		}
		ok := s.tryDebugFile(o, p, func(d *object) bool {
			// A GNU build ID, when both have one, must agree too.
			if o.gnuID != "" && d.gnuID != "" && o.gnuID != d.gnuID {
				return false
			}
			return fileCRC(d) == o.debugCRC
		})
		if ok {
			return true
		}
	}
	return false
}

func (s *Symbolizer) tryDebugFile(o *object, path string, match func(*object) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return false
	}
	d, err := newObject(f, f)
	if err != nil {
		f.Close()
		return false
	}
	if !match(d) || !usefulDebug(d.ef) {
		f.Close()
		return false
	}
	o.debug, o.debugCloser = d.ef, f
	return true
}

// usefulDebug reports whether a debug file brings symbols or DWARF.
func usefulDebug(f *elf.File) bool {
	return hasData(f, ".symtab") || hasData(f, ".debug_info") || hasData(f, ".zdebug_info")
}

func fileCRC(d *object) uint32 {
	ra, ok := d.closer.(io.ReaderAt)
	if !ok {
		return 0
	}
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, io.NewSectionReader(ra, 0, 1<<62)); err != nil {
		return 0
	}
	return h.Sum32()
}
