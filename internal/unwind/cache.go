package unwind

import (
	"debug/elf"
	"sync"
)

// Cache holds tables by build ID, so a library mapped by many processes
// (or found under several /proc/PID/root paths) is parsed once.
type Cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*cacheEntry
	order   []string // insertion order, for eviction
}

type cacheEntry struct {
	once sync.Once
	t    *Table
	err  error
}

// NewCache keeps at most max tables (max <= 0: 256).
func NewCache(max int) *Cache {
	if max <= 0 {
		max = 256
	}
	return &Cache{max: max, entries: map[string]*cacheEntry{}}
}

// Get returns the table for buildID, calling open to read the file the
// first time. Errors are cached too: a file that fails once fails again.
// An empty build ID cannot be keyed, so its table is built every time.
func (c *Cache) Get(buildID string, open func() (*elf.File, error)) (*Table, error) {
	if buildID == "" {
		return build(open)
	}
	c.mu.Lock()
	e, ok := c.entries[buildID]
	if !ok {
		e = &cacheEntry{}
		c.entries[buildID] = e
		c.order = append(c.order, buildID)
		for len(c.order) > c.max {
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.mu.Unlock()
	e.once.Do(func() { e.t, e.err = build(open) })
	return e.t, e.err
}

// GetPath is Get for a file path (e.g. under /proc/PID/root).
func (c *Cache) GetPath(buildID, path string) (*Table, error) {
	return c.Get(buildID, func() (*elf.File, error) { return elf.Open(path) })
}

// Len is the number of cached entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func build(open func() (*elf.File, error)) (*Table, error) {
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Build(f)
}
