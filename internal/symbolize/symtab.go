package symbolize

import (
	"cmp"
	"debug/elf"
	"slices"
	"strings"
)

// symbol is a function of an ELF symbol table covering [addr, end).
type symbol struct {
	addr, end uint64
	name      string
}

type symtab struct {
	syms     []symbol // sorted by addr, one per address
	demangle map[string]string
}

type rawSym struct {
	addr, size, secEnd uint64
	name               string
	rank               int
}

// nameRank orders aliases at one address, lower first: plain names before
// reserved ones (read before __libc_read), then global, weak, local.
func nameRank(name string, global, weak bool) int {
	n := name
	if strings.HasPrefix(n, "_Z") || strings.HasPrefix(n, "_R") {
		n = n[1:]
	}
	u := len(n) - len(strings.TrimLeft(n, "_"))
	r := u * 4
	switch {
	case global:
	case weak:
		r++
	default:
		r += 2
	}
	return r
}

// funcSyms returns the function symbols of one table of f.
func funcSyms(f *elf.File, syms []elf.Symbol) []rawSym {
	var out []rawSym
	for _, s := range syms {
		typ := elf.ST_TYPE(s.Info)
		if typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC {
			continue
		}
		if s.Section == elf.SHN_UNDEF || s.Value == 0 || s.Name == "" {
			continue
		}
		r := rawSym{addr: s.Value, size: s.Size, name: s.Name}
		if i := int(s.Section); s.Section < elf.SHN_LORESERVE && i < len(f.Sections) {
			sec := f.Sections[i]
			if s.Value >= sec.Addr && s.Value-sec.Addr < sec.Size {
				r.secEnd = sec.Addr + sec.Size
			}
		}
		bind := elf.ST_BIND(s.Info)
		r.rank = nameRank(s.Name, bind == elf.STB_GLOBAL, bind == elf.STB_WEAK)
		out = append(out, r)
	}
	return out
}

// loadSymtab reads function symbols from the first table that has any:
// the debug file's .symtab, the file's .symtab, then its .dynsym (all a
// stripped library like Debian's libc keeps).
func loadSymtab(debug, main *elf.File) *symtab {
	var raw []rawSym
	for _, f := range []*elf.File{debug, main} {
		if f == nil || raw != nil {
			continue
		}
		if syms, err := f.Symbols(); err == nil {
			raw = funcSyms(f, syms)
		}
	}
	if raw == nil {
		if syms, err := main.DynamicSymbols(); err == nil {
			raw = funcSyms(main, syms)
		}
	}
	if len(raw) == 0 {
		return nil
	}
	return newSymtab(raw)
}

func newSymtab(raw []rawSym) *symtab {
	slices.SortFunc(raw, func(a, b rawSym) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	// One entry per address: the preferred alias, with the largest size.
	uniq := raw[:0]
	for _, r := range raw {
		if n := len(uniq); n > 0 && uniq[n-1].addr == r.addr {
			last := &uniq[n-1]
			last.size = max(last.size, r.size)
			last.secEnd = max(last.secEnd, r.secEnd)
			continue
		}
		uniq = append(uniq, r)
	}
	t := &symtab{syms: make([]symbol, len(uniq)), demangle: map[string]string{}}
	for i, r := range uniq {
		end := r.addr + r.size
		if r.size == 0 || end < r.addr {
			// Size unknown: up to the next symbol, within the section.
			end = r.secEnd
			if i+1 < len(uniq) && (end == 0 || uniq[i+1].addr < end) {
				end = uniq[i+1].addr
			}
			if end <= r.addr {
				end = r.addr + 1
			}
		}
		t.syms[i] = symbol{addr: r.addr, end: end, name: r.name}
	}
	return t
}

// nestedLookBack is how many earlier symbols may still contain an address
// past the end of the closest one (functions nested in bigger ones).
const nestedLookBack = 4

func (t *symtab) lookup(pc uint64) *symbol {
	i, found := slices.BinarySearchFunc(t.syms, pc, func(s symbol, pc uint64) int {
		return cmp.Compare(s.addr, pc)
	})
	if !found {
		i--
	}
	for j := i; j >= 0 && j > i-nestedLookBack; j-- {
		if s := &t.syms[j]; pc >= s.addr && pc < s.end {
			return s
		}
	}
	return nil
}

// demangled returns the readable name of s; callers hold the object lock.
func (t *symtab) demangled(s *symbol) string {
	if d, ok := t.demangle[s.name]; ok {
		return d
	}
	d := demangleName(s.name)
	t.demangle[s.name] = d
	return d
}
