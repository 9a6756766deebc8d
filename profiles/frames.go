package profiles

import (
	"fmt"
	"path"
	"strings"

	"blockprof/internal/symbolize"
)

// kernelFile is the pseudo file of the mapping kernel frames live in; pprof
// and perf both know the name.
const kernelFile = "[kernel.kallsyms]"

// syntheticFile is the pseudo file of frames blockprof makes up, such as
// "[unknown stack]".
const syntheticFile = "[blockprof]"

// unknownStack stands in for a stack that could not be captured, so the
// sample keeps its exact time.
const unknownStack = "[unknown stack]"

func isKernel(loc *symbolize.Location) bool {
	return loc.Mapping != nil && loc.Mapping.File == kernelFile
}

// isSynthetic reports frames that no address produced: blockprof's own
// pseudo frames, and address-less frames outside any mapping.
func isSynthetic(loc *symbolize.Location) bool {
	if loc.Mapping == nil {
		return loc.Address == 0
	}
	return loc.Mapping.File == syntheticFile
}

// funcName is the name a frame is shown under, "" when it has none.
func funcName(f symbolize.Frame) string {
	if f.Function != "" {
		return f.Function
	}
	return f.SystemName
}

// addrName names a location nothing was resolved for: the mapped file and
// the offset in it when known, because a raw address means little across
// runs with ASLR.
func addrName(loc *symbolize.Location) string {
	m := loc.Mapping
	if m == nil || m.File == "" {
		if loc.Address == 0 {
			return "[unknown]"
		}
		return fmt.Sprintf("0x%x", loc.Address)
	}
	base := strings.TrimSuffix(strings.TrimPrefix(path.Base(m.File), "["), "]")
	off := loc.Address
	if loc.Address >= m.Start && (loc.Address < m.Limit || m.Limit == 0) {
		off = loc.Address - m.Start + m.Offset
	}
	return fmt.Sprintf("[%s+0x%x]", base, off)
}

// entry is one frame of a flattened stack, inlined frames expanded.
type entry struct {
	loc   *symbolize.Location
	frame *symbolize.Frame // nil when the location resolved to nothing
}

func (e entry) name() string {
	if e.frame != nil {
		if n := funcName(*e.frame); n != "" {
			return n
		}
	}
	return addrName(e.loc)
}

// flatten lists a sample's frames leaf first, inlined callees before their
// callers, with an "[unknown stack]" frame for an empty stack.
func flatten(stack []symbolize.Location) []entry {
	if len(stack) == 0 {
		return []entry{{
			loc:   &symbolize.Location{Mapping: &symbolize.Mapping{File: syntheticFile}},
			frame: &symbolize.Frame{Function: unknownStack},
		}}
	}
	var out []entry
	for i := range stack {
		loc := &stack[i]
		if len(loc.Frames) == 0 {
			out = append(out, entry{loc: loc})
			continue
		}
		for j := range loc.Frames {
			out = append(out, entry{loc: loc, frame: &loc.Frames[j]})
		}
	}
	return out
}
