package symbolize

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// ErrKallsymsHidden is returned when /proc/kallsyms shows only zero
// addresses: kptr_restrict hides them from callers without CAP_SYSLOG.
var ErrKallsymsHidden = errors.New("kernel symbol addresses are hidden (kernel.kptr_restrict; run as root or with CAP_SYSLOG)")

// kernelSymMaxSize caps how far past its start a kernel symbol is trusted
// to extend, since kallsyms has no sizes and gaps (e.g. between vmlinux and
// module areas) would otherwise be blamed on the symbol before them.
const kernelSymMaxSize = 1 << 20

type ksym struct {
	addr   uint64
	name   string
	module string // "" for vmlinux
	text   bool
	rank   int // alias preference, lower wins
}

type kallsyms struct {
	syms []ksym // sorted by addr, one per address
}

// parseKallsyms parses /proc/kallsyms. Every address is kept (data symbols
// bound the text symbols before them) but only text symbols resolve.
func parseKallsyms(data []byte) (*kallsyms, error) {
	var syms []ksym
	nonzero := false
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
		f := bytes.Fields(line)
		if len(f) < 3 || len(f[1]) != 1 {
			return nil, fmt.Errorf("kallsyms line %d: malformed %q", lineno, line)
		}
		addr, err := strconv.ParseUint(string(f[0]), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms line %d: bad address: %w", lineno, err)
		}
		if addr != 0 {
			nonzero = true
		}
		s := ksym{addr: addr, name: string(f[2])}
		if len(f) >= 4 {
			m := f[3]
			if len(m) >= 2 && m[0] == '[' && m[len(m)-1] == ']' {
				s.module = string(m[1 : len(m)-1])
			}
		}
		switch f[1][0] {
		case 't', 'T', 'w', 'W':
			s.text = true
		}
		global := f[1][0] >= 'A' && f[1][0] <= 'Z'
		s.rank = nameRank(s.name, global, false)
		if !s.text {
			s.rank += 1 << 20
		}
		syms = append(syms, s)
	}
	if len(syms) > 0 && !nonzero {
		return nil, ErrKallsymsHidden
	}
	slices.SortStableFunc(syms, func(a, b ksym) int {
		if a.addr != b.addr {
			if a.addr < b.addr {
				return -1
			}
			return 1
		}
		return a.rank - b.rank
	})
	// Keep the preferred alias at each address.
	out := syms[:0]
	for i, s := range syms {
		if i > 0 && s.addr == syms[i-1].addr {
			continue
		}
		out = append(out, s)
	}
	return &kallsyms{syms: slices.Clip(out)}, nil
}

// lookup returns the text symbol covering addr.
func (k *kallsyms) lookup(addr uint64) (*ksym, bool) {
	i, found := slices.BinarySearchFunc(k.syms, addr, func(s ksym, a uint64) int {
		switch {
		case s.addr < a:
			return -1
		case s.addr > a:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 {
		return nil, false
	}
	s := &k.syms[i]
	if !s.text || addr-s.addr >= kernelSymMaxSize {
		return nil, false
	}
	return s, true
}

func (s *Symbolizer) loadKernel() {
	s.kernelOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join(s.root, "proc", "kallsyms"))
		if err != nil {
			s.kernelErr = fmt.Errorf("read kallsyms: %w", err)
			return
		}
		k, err := parseKallsyms(data)
		if err != nil {
			s.kernelErr = err
			return
		}
		if len(k.syms) == 0 {
			s.kernelErr = errors.New("kallsyms has no symbols")
			return
		}
		s.kernel = k
		m := s.kernelMap
		m.Start = k.syms[0].addr
		m.Limit = ^uint64(0)
		m.HasFunctions = true
	})
}

// Kernel resolves kernel addresses through /proc/kallsyms, read once on the
// first call. Every Location shares one "[kernel.kallsyms]" Mapping; when
// kallsyms is unusable (see KernelErr) the Locations have no frames.
// Functions in modules carry the module name as File, e.g. "[ext4]".
func (s *Symbolizer) Kernel(addrs []uint64) []Location {
	s.loadKernel()
	locs := make([]Location, len(addrs))
	var hit, miss int64
	for i, a := range addrs {
		locs[i] = Location{Address: a, Mapping: s.kernelMap}
		if s.kernel == nil {
			miss++
			continue
		}
		sym, ok := s.kernel.lookup(a)
		if !ok {
			miss++
			continue
		}
		hit++
		f := Frame{Function: sym.name, SystemName: sym.name}
		if sym.module != "" {
			f.File = "[" + sym.module + "]"
		}
		locs[i].Frames = []Frame{f}
	}
	s.resolved.Add(hit)
	s.unresolved.Add(miss)
	return locs
}

// KernelErr reports why kernel addresses cannot be resolved (unreadable
// kallsyms, hidden addresses), or nil. It loads kallsyms if needed.
func (s *Symbolizer) KernelErr() error {
	s.loadKernel()
	return s.kernelErr
}
