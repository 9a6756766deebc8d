// Package symbolize turns addresses captured in the kernel into functions,
// files and lines: kernel addresses through /proc/kallsyms, user addresses
// through the ELF files (symbol tables, DWARF, Go pclntab, separate debug
// files) mapped by the target process.
package symbolize

// Mapping is one region of an address space as a profile shows it. The
// symbolizer hands out one *Mapping per region and process, so callers can
// deduplicate by pointer.
type Mapping struct {
	Start, Limit, Offset uint64
	// File is the path as the target sees it (no /proc/PID/root prefix), or a
	// bracketed pseudo name such as "[kernel.kallsyms]", "[vdso]" or
	// "[blockprof]" for frames that come from no file.
	File string
	// BuildID is the lower-case hex NT_GNU_BUILD_ID (or the Go build ID when
	// the file has no GNU one); empty when the file has neither.
	BuildID string
	// Has* report what was actually resolved for this mapping, so pprof does
	// not try (and warn) to symbolize it again.
	HasFunctions, HasFilenames, HasLineNumbers, HasInlineFrames bool
}

// Frame is one function activation at a location.
type Frame struct {
	Function   string // demangled, human-readable name
	SystemName string // name as stored in the binary (mangled), or Function
	File       string // source file, "" when unknown
	Line       int    // source line, 0 when unknown
	StartLine  int    // first line of the function, 0 when unknown
}

// Location is one address of a stack with what it resolved to.
type Location struct {
	// Address is the instruction address looked up: callers pass a return
	// address minus one for every frame but the leaf, so lines point at the
	// call, not the instruction after it.
	Address uint64
	Mapping *Mapping // nil when the address lies in no known mapping
	// Frames holds the inlined callee first and the outermost (physical)
	// function last; empty when nothing was resolved.
	Frames []Frame
}
