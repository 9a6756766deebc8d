package symbolize

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

// Options configure a Symbolizer.
type Options struct {
	// Root overrides "/" for tests (where /proc and /usr/lib/debug are
	// found); "" means "/".
	Root string
	// DebugDirs are searched for separate debug files, below Root; nil
	// means {"/usr/lib/debug"}.
	DebugDirs []string
}

// Stats counts what a Symbolizer did.
type Stats struct {
	FilesOpened int64 // object files parsed (cache misses)
	DebugFiles  int64 // separate debug files found for them
	CacheHits   int64 // file opens answered from the cache
	Resolved    int64 // addresses that got at least one frame
	Unresolved  int64 // addresses that got none
}

// Symbolizer resolves addresses. Parsed files are cached by build ID (or
// by device, inode, size and mtime when they have none), so a library
// mapped by many processes is read once. It is safe for concurrent use.
type Symbolizer struct {
	root      string
	debugDirs []string

	kernelOnce sync.Once
	kernel     *kallsyms
	kernelErr  error
	kernelMap  *Mapping

	mu      sync.Mutex
	byID    map[string]*object
	byKey   map[fileKey]*object
	bad     map[fileKey]error // files that are not usable ELF
	objects []*object
	closed  bool

	filesOpened, debugFiles, cacheHits, resolved, unresolved atomic.Int64
}

// New returns a Symbolizer.
func New(opts Options) *Symbolizer {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	dirs := opts.DebugDirs
	if dirs == nil {
		dirs = []string{"/usr/lib/debug"}
	}
	return &Symbolizer{
		root:      root,
		debugDirs: dirs,
		kernelMap: &Mapping{File: "[kernel.kallsyms]"},
		byID:      map[string]*object{},
		byKey:     map[fileKey]*object{},
		bad:       map[fileKey]error{},
	}
}

// Stats returns the counters so far.
func (s *Symbolizer) Stats() Stats {
	return Stats{
		FilesOpened: s.filesOpened.Load(),
		DebugFiles:  s.debugFiles.Load(),
		CacheHits:   s.cacheHits.Load(),
		Resolved:    s.resolved.Load(),
		Unresolved:  s.unresolved.Load(),
	}
}

// Close releases every cached file. Addresses resolved afterwards only get
// what was already loaded.
func (s *Symbolizer) Close() error {
	s.mu.Lock()
	objs := s.objects
	s.objects, s.closed = nil, true
	s.byID, s.byKey = map[string]*object{}, map[fileKey]*object{}
	s.mu.Unlock()
	var errs []error
	for _, o := range objs {
		if err := o.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fileKey identifies a file's content when it has no build ID.
type fileKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}, true
}

// fileSource says where a file came from, for finding its debug file.
type fileSource struct {
	path     string // as the target sees it
	procRoot string // prefix making path reachable from here ("" = host)
}

// open returns the parsed object for f, taking ownership of f.
func (s *Symbolizer) open(f *os.File, src fileSource) (*object, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", src.path, err)
	}
	key, haveKey := keyOf(fi)
	return s.openReader(f, f, key, haveKey, src)
}

// openReader returns the parsed object for r, taking ownership of c.
func (s *Symbolizer) openReader(r io.ReaderAt, c io.Closer, key fileKey, haveKey bool, src fileSource) (*object, error) {
	closeC := func() {
		if c != nil {
			c.Close()
		}
	}
	if haveKey {
		s.mu.Lock()
		o, ok := s.byKey[key]
		bad := s.bad[key]
		s.mu.Unlock()
		if ok {
			closeC()
			s.cacheHits.Add(1)
			return o, nil
		}
		if bad != nil {
			closeC()
			return nil, bad
		}
	}
	o, err := newObject(r, c)
	if err != nil {
		closeC()
		err = fmt.Errorf("parse %s: %w", src.path, err)
		if haveKey {
			s.mu.Lock()
			s.bad[key] = err
			s.mu.Unlock()
		}
		return nil, err
	}
	// A build ID seen before (another path, container or process) means
	// the same content: reuse it before looking for debug files.
	if o.buildID != "" {
		s.mu.Lock()
		prev, ok := s.byID[o.buildID]
		if ok && haveKey {
			s.byKey[key] = prev
		}
		s.mu.Unlock()
		if ok {
			o.close()
			s.cacheHits.Add(1)
			return prev, nil
		}
	}
	if s.findDebugFile(o, src) {
		s.debugFiles.Add(1)
	}
	o.setFlags()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		o.close()
		return nil, errors.New("symbolizer closed")
	}
	// Another goroutine may have opened the same file meanwhile.
	if prev, ok := s.byKey[key]; haveKey && ok {
		o.close()
		s.cacheHits.Add(1)
		return prev, nil
	}
	if prev, ok := s.byID[o.buildID]; o.buildID != "" && ok {
		o.close()
		s.cacheHits.Add(1)
		return prev, nil
	}
	if o.buildID != "" {
		s.byID[o.buildID] = o
	}
	if haveKey {
		s.byKey[key] = o
	}
	s.objects = append(s.objects, o)
	s.filesOpened.Add(1)
	return o, nil
}

// openPath opens a file of the host (or Root) directly, for tests and for
// callers symbolizing a file rather than a process.
func (s *Symbolizer) openPath(path string) (*object, error) {
	f, err := os.Open(filepath.Join(s.root, path))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s.open(f, fileSource{path: path, procRoot: s.root})
}
