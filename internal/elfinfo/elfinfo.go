// Package elfinfo reads the facts about an ELF file that several packages
// need: its build IDs, whether Go built it, and where a process loaded it.
package elfinfo

import (
	"debug/elf"
	"encoding/hex"
)

// maxNoteSize bounds a note section or segment read for build IDs.
const maxNoteSize = 1 << 20

// BuildIDs returns the GNU build ID (lower-case hex, what pprof compares)
// and the Go build ID; either is "" when the file has none.
func BuildIDs(ef *elf.File) (gnu, goID string) {
	scan := func(data []byte) {
		for len(data) >= 12 {
			namesz := uint64(ef.ByteOrder.Uint32(data[0:]))
			descsz := uint64(ef.ByteOrder.Uint32(data[4:]))
			typ := ef.ByteOrder.Uint32(data[8:])
			data = data[12:]
			nameEnd := align4(namesz)
			descEnd := nameEnd + align4(descsz)
			if nameEnd > uint64(len(data)) || descEnd > uint64(len(data)) || descEnd < nameEnd {
				return
			}
			name := data[:namesz]
			desc := data[nameEnd : nameEnd+descsz]
			switch {
			case typ == 3 && string(name) == "GNU\x00" && gnu == "": // NT_GNU_BUILD_ID
				gnu = hex.EncodeToString(desc)
			case typ == 4 && string(name) == "Go\x00\x00" && goID == "": // Go's build ID note
				goID = string(desc)
			}
			data = data[descEnd:]
		}
	}
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_NOTE && s.Size <= maxNoteSize {
			if data, err := s.Data(); err == nil {
				scan(data)
			}
		}
	}
	if gnu == "" && goID == "" {
		// No section headers (or stripped ones): try the segments.
		for _, p := range ef.Progs {
			if p.Type == elf.PT_NOTE && p.Filesz <= maxNoteSize {
				data := make([]byte, p.Filesz)
				if n, _ := p.ReadAt(data, 0); uint64(n) == p.Filesz {
					scan(data)
				}
			}
		}
	}
	return gnu, goID
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// IsGo reports a Go binary: its pclntab or build info section, or, with
// section headers stripped, its Go build ID note.
func IsGo(ef *elf.File) bool {
	if ef.Section(".gopclntab") != nil || ef.Section(".go.buildinfo") != nil {
		return true
	}
	_, goID := BuildIDs(ef)
	return goID != ""
}

// LoadBias is where a process loaded a file minus where the file was
// linked, from one mapping of its PT_LOAD segment seg: the mapping starts
// at address start and maps the file from offset off. ok is false when the
// mapping does not map seg. The kernel maps whole pages, so the mapping
// may start before the segment, at its page.
func LoadBias(seg *elf.Prog, start, off uint64) (bias uint64, ok bool) {
	if seg.Type != elf.PT_LOAD || off < seg.Off&^pageMask || off >= seg.Off+seg.Filesz {
		return 0, false
	}
	linked := seg.Vaddr - seg.Off + off
	return start - linked, true
}

// pageMask assumes 4 KiB pages, the smallest the kernel uses.
const pageMask = 0xfff
