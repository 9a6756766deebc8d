package symbolize

import (
	"debug/elf"

	"blockprof/internal/symbolize/gopclntab"
)

// goTable resolves Go PCs through the pclntab, which even stripped Go
// binaries keep and which carries inlining.
type goTable interface {
	lookup(pc uint64) []Frame
}

type pclnTable struct{ t *gopclntab.Table }

func openGoTable(f *elf.File) goTable {
	t, err := gopclntab.Open(f)
	if err != nil || t == nil {
		return nil
	}
	return pclnTable{t}
}

func (p pclnTable) lookup(pc uint64) []Frame {
	gf := p.t.Lookup(pc)
	if len(gf) == 0 {
		return nil
	}
	out := make([]Frame, len(gf))
	for i, f := range gf {
		out[i] = Frame{Function: f.Function, SystemName: f.Function, File: f.File, Line: f.Line, StartLine: f.StartLine}
	}
	return out
}
