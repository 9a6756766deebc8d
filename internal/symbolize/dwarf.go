package symbolize

import (
	"cmp"
	"debug/dwarf"
	"slices"
)

// dwarfIndex answers file:line and inline chains from DWARF. Compilation
// units are found by address up front; each one's line table and function
// tree are parsed on its first lookup. Callers serialize access.
type dwarfIndex struct {
	d       *dwarf.Data
	cuSpans []span         // sorted by low
	units   []*dwarf.Entry // compilation unit entries
	parsed  []*cuInfo      // by unit, nil until needed
	origins map[dwarf.Offset]*funcName
}

// span is an address range owned by an item (unit or scope index).
type span struct {
	low, high uint64
	item      int32
}

type lineRow struct {
	addr uint64
	file int32
	line int32
	end  bool // end_sequence: no code at or after addr in this sequence
}

// scope is a concrete function (subprogram) or an inlined call.
type scope struct {
	ranges   [][2]uint64
	name     *funcName
	callFile int32 // inlined calls: where the call is
	callLine int32
	children []int32
}

type funcName struct {
	name, system string
	declLine     int
}

type cuInfo struct {
	files  []string
	lines  []lineRow
	scopes []scope
	roots  []span // spans of top-level subprograms, sorted by low
}

// lookBack bounds how many earlier spans are tried when ranges overlap.
const lookBack = 4

func newDwarfIndex(d *dwarf.Data) *dwarfIndex {
	x := &dwarfIndex{d: d, origins: map[dwarf.Offset]*funcName{}}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit {
			r.SkipChildren()
			continue
		}
		unit := int32(len(x.units))
		x.units = append(x.units, e)
		x.parsed = append(x.parsed, nil)
		ranges, err := d.Ranges(e)
		if err != nil || len(ranges) == 0 {
			// No ranges on the unit: take them from its line table.
			ci := x.parseUnit(int(unit))
			ranges = lineRanges(ci.lines)
		}
		for _, rg := range ranges {
			if rg[1] > rg[0] {
				x.cuSpans = append(x.cuSpans, span{rg[0], rg[1], unit})
			}
		}
		r.SkipChildren()
	}
	if len(x.cuSpans) == 0 {
		return nil
	}
	sortSpans(x.cuSpans)
	return x
}

func sortSpans(s []span) {
	slices.SortFunc(s, func(a, b span) int {
		if c := cmp.Compare(a.low, b.low); c != 0 {
			return c
		}
		return cmp.Compare(a.high, b.high)
	})
}

// findSpan returns the item of a span containing pc, or -1.
func findSpan(s []span, pc uint64) int32 {
	i, found := slices.BinarySearchFunc(s, pc, func(sp span, pc uint64) int {
		return cmp.Compare(sp.low, pc)
	})
	if found {
		// Several spans may start at pc; use the last of them.
		for i+1 < len(s) && s[i+1].low == pc {
			i++
		}
	} else {
		i--
	}
	for j := i; j >= 0 && j > i-lookBack; j-- {
		if pc >= s[j].low && pc < s[j].high {
			return s[j].item
		}
	}
	return -1
}

func lineRanges(rows []lineRow) [][2]uint64 {
	var out [][2]uint64
	start, open := uint64(0), false
	for _, r := range rows {
		switch {
		case r.end && open:
			out = append(out, [2]uint64{start, r.addr})
			open = false
		case !r.end && !open:
			start, open = r.addr, true
		}
	}
	return out
}

func (x *dwarfIndex) lookup(pc uint64) []Frame {
	unit := findSpan(x.cuSpans, pc)
	if unit < 0 {
		return nil
	}
	ci := x.parseUnit(int(unit))
	file, line := ci.lineAt(pc)

	var chain []*scope // outermost first
	if root := findSpan(ci.roots, pc); root >= 0 {
		sc := &ci.scopes[root]
		chain = append(chain, sc)
		for depth := 0; depth < 256; depth++ {
			next := -1
			for _, c := range sc.children {
				if containsPC(ci.scopes[c].ranges, pc) {
					next = int(c)
					break
				}
			}
			if next < 0 {
				break
			}
			sc = &ci.scopes[next]
			chain = append(chain, sc)
		}
	}
	if len(chain) == 0 {
		if line == 0 && file == "" {
			return nil
		}
		return []Frame{{File: file, Line: line}}
	}
	frames := make([]Frame, len(chain))
	for k := range chain {
		sc := chain[len(chain)-1-k]
		f := Frame{File: file, Line: line}
		if k > 0 {
			// An outer frame is at the call of the frame inside it.
			inner := chain[len(chain)-k]
			f.File, f.Line = ci.fileName(inner.callFile), int(inner.callLine)
		}
		if sc.name != nil {
			f.Function, f.SystemName, f.StartLine = sc.name.name, sc.name.system, sc.name.declLine
		}
		frames[k] = f
	}
	return frames
}

func containsPC(ranges [][2]uint64, pc uint64) bool {
	for _, r := range ranges {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

func (ci *cuInfo) fileName(i int32) string {
	if i < 0 || int(i) >= len(ci.files) {
		return ""
	}
	return ci.files[i]
}

func (ci *cuInfo) lineAt(pc uint64) (string, int) {
	i, found := slices.BinarySearchFunc(ci.lines, pc, func(r lineRow, pc uint64) int {
		return cmp.Compare(r.addr, pc)
	})
	if found {
		// Rows sharing an address: the last one (not an end marker) wins.
		for i+1 < len(ci.lines) && ci.lines[i+1].addr == pc {
			i++
		}
	} else {
		i--
	}
	if i < 0 || ci.lines[i].end {
		return "", 0
	}
	r := ci.lines[i]
	return ci.fileName(r.file), int(r.line)
}

// parseUnit reads one unit's line table and function tree, once.
func (x *dwarfIndex) parseUnit(unit int) *cuInfo {
	if ci := x.parsed[unit]; ci != nil {
		return ci
	}
	ci := &cuInfo{}
	x.parsed[unit] = ci
	cu := x.units[unit]
	x.readLines(ci, cu)
	x.readScopes(ci, cu)
	return ci
}

func (x *dwarfIndex) readLines(ci *cuInfo, cu *dwarf.Entry) {
	lr, err := x.d.LineReader(cu)
	if err != nil || lr == nil {
		return
	}
	fileIdx := map[*dwarf.LineFile]int32{}
	var pending []*dwarf.LineFile // files met before the table was final
	var e dwarf.LineEntry
	for {
		if err := lr.Next(&e); err != nil {
			break
		}
		fi, ok := fileIdx[e.File]
		if !ok {
			fi = int32(-2 - len(pending))
			pending = append(pending, e.File)
			fileIdx[e.File] = fi
		}
		ci.lines = append(ci.lines, lineRow{addr: e.Address, file: fi, line: int32(e.Line), end: e.EndSequence})
	}
	// Number files as the unit's file table does, which is what
	// DW_AT_call_file refers to.
	files := lr.Files()
	ci.files = make([]string, len(files))
	final := make(map[*dwarf.LineFile]int32, len(files))
	for i, f := range files {
		if f != nil {
			ci.files[i] = f.Name
			if _, dup := final[f]; !dup {
				final[f] = int32(i)
			}
		}
	}
	remap := make([]int32, len(pending))
	for i, f := range pending {
		remap[i] = -1
		if j, ok := final[f]; ok {
			remap[i] = j
		}
	}
	for i := range ci.lines {
		if fi := ci.lines[i].file; fi <= -2 {
			ci.lines[i].file = remap[-2-fi]
		}
	}
	// Sequences are not necessarily in address order; at equal addresses
	// put end markers first so a sequence starting there wins.
	slices.SortStableFunc(ci.lines, func(a, b lineRow) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		switch {
		case a.end && !b.end:
			return -1
		case !a.end && b.end:
			return 1
		}
		return 0
	})
}

// descend says which entries can hold code-bearing scopes.
func descend(t dwarf.Tag) bool {
	switch t {
	case dwarf.TagCompileUnit, dwarf.TagPartialUnit, dwarf.TagNamespace, dwarf.TagModule,
		dwarf.TagSubprogram, dwarf.TagInlinedSubroutine, dwarf.TagLexDwarfBlock,
		dwarf.TagTryDwarfBlock, dwarf.TagCatchDwarfBlock:
		return true
	}
	return false
}

func (x *dwarfIndex) readScopes(ci *cuInfo, cu *dwarf.Entry) {
	r := x.d.Reader()
	r.Seek(cu.Offset)
	if e, err := r.Next(); err != nil || e == nil || e.Offset != cu.Offset {
		return
	}
	if !cu.Children {
		return
	}
	// stack holds the scope each open entry belongs to (-1: none).
	stack := []int32{-1}
	for len(stack) > 0 {
		e, err := r.Next()
		if err != nil {
			break
		}
		if e == nil {
			stack = stack[:len(stack)-1]
			continue
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			break // ran into the next unit
		}
		parent := stack[len(stack)-1]
		cur := parent
		switch e.Tag {
		case dwarf.TagSubprogram, dwarf.TagInlinedSubroutine:
			ranges, err := x.d.Ranges(e)
			if err != nil || len(ranges) == 0 {
				break // a declaration or abstract instance: no code
			}
			sc := scope{ranges: ranges, name: x.nameOf(e, 0)}
			idx := int32(len(ci.scopes))
			if e.Tag == dwarf.TagInlinedSubroutine && parent >= 0 {
				if v, ok := e.Val(dwarf.AttrCallFile).(int64); ok && v >= 0 && v < 1<<31 {
					sc.callFile = int32(v)
				} else {
					sc.callFile = -1
				}
				if v, ok := e.Val(dwarf.AttrCallLine).(int64); ok && v >= 0 && v < 1<<31 {
					sc.callLine = int32(v)
				}
				ci.scopes = append(ci.scopes, sc)
				ci.scopes[parent].children = append(ci.scopes[parent].children, idx)
			} else {
				// Subprograms (even nested ones) are physical functions.
				ci.scopes = append(ci.scopes, sc)
				for _, rg := range ranges {
					if rg[1] > rg[0] {
						ci.roots = append(ci.roots, span{rg[0], rg[1], idx})
					}
				}
			}
			cur = idx
		}
		if e.Children {
			if descend(e.Tag) && (cur != parent || e.Tag != dwarf.TagSubprogram) {
				stack = append(stack, cur)
			} else {
				r.SkipChildren()
			}
		}
	}
	sortSpans(ci.roots)
}

const (
	attrMIPSLinkageName = dwarf.Attr(0x2007)
	maxOriginDepth      = 8
)

// nameOf names a function entry, following abstract_origin and
// specification links to where the name and declaration line are.
func (x *dwarfIndex) nameOf(e *dwarf.Entry, depth int) *funcName {
	if depth > maxOriginDepth {
		return nil
	}
	fn := &funcName{}
	if v, ok := e.Val(dwarf.AttrDeclLine).(int64); ok && v > 0 && v < 1<<31 {
		fn.declLine = int(v)
	}
	link, _ := e.Val(dwarf.AttrLinkageName).(string)
	if link == "" {
		link, _ = e.Val(attrMIPSLinkageName).(string)
	}
	name, _ := e.Val(dwarf.AttrName).(string)
	if link == "" && name == "" || fn.declLine == 0 {
		var ref dwarf.Offset
		var ok bool
		if ref, ok = e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); !ok {
			ref, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if ok && ref != e.Offset {
			if o := x.origin(ref, depth+1); o != nil {
				if link == "" && name == "" {
					fn.name, fn.system = o.name, o.system
				}
				if fn.declLine == 0 {
					fn.declLine = o.declLine
				}
			}
		}
	}
	switch {
	case link != "":
		fn.name, fn.system = demangleName(link), link
	case name != "":
		fn.name, fn.system = name, name
	}
	return fn
}

func (x *dwarfIndex) origin(off dwarf.Offset, depth int) *funcName {
	if fn, ok := x.origins[off]; ok {
		return fn
	}
	x.origins[off] = nil // breaks reference cycles
	r := x.d.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil || e == nil || e.Offset != off {
		return nil
	}
	fn := x.nameOf(e, depth)
	x.origins[off] = fn
	return fn
}
