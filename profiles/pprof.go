package profiles

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"

	"blockprof/internal/symbolize"
)

// PprofOptions tunes WritePprof. It has no fields yet: the output is always
// the standard gzipped profile.proto that pprof and Go's tooling read.
type PprofOptions struct{}

// unmappedFile holds locations whose address lies in no known mapping;
// bracketed so pprof does not try to symbolize them.
const unmappedFile = "[unmapped]"

// WritePprof writes p as a gzipped pprof profile shaped like Go's block
// profile (contentions/count, delay/nanoseconds) plus run-queue delay, so
// `go tool pprof` and other pprof readers understand it without flags.
func WritePprof(w io.Writer, p *Profile, opts PprofOptions) error {
	pp, err := toPprof(p)
	if err != nil {
		return err
	}
	if err := pp.Write(w); err != nil {
		return fmt.Errorf("write pprof: %w", err)
	}
	return nil
}

// builder accumulates the pprof tables with 1-based IDs in first-use order.
type builder struct {
	pp        *profile.Profile
	mappings  map[*symbolize.Mapping]*profile.Mapping
	pseudo    map[string]*profile.Mapping // mappings blockprof makes up, by file
	locations map[locKey]*profile.Location
	functions map[funcKey]*profile.Function
	loop      bool // stall sample types present
}

type funcKey struct {
	name, systemName, file string
	startLine              int64
}

type locKey struct {
	m     *profile.Mapping
	addr  uint64
	names string // tells address-0 synthetic locations apart
}

func toPprof(p *Profile) (*profile.Profile, error) {
	b := &builder{
		pp: &profile.Profile{
			SampleType: []*profile.ValueType{
				{Type: "contentions", Unit: "count"},
				{Type: "delay", Unit: "nanoseconds"},
				{Type: "runqueue", Unit: "nanoseconds"},
			},
			DefaultSampleType: "delay",
			PeriodType:        &profile.ValueType{Type: "contentions", Unit: "count"},
			Period:            1,
			DurationNanos:     p.Duration.Nanoseconds(),
		},
		mappings:  map[*symbolize.Mapping]*profile.Mapping{},
		pseudo:    map[string]*profile.Mapping{},
		locations: map[locKey]*profile.Location{},
		functions: map[funcKey]*profile.Function{},
	}
	if !p.Start.IsZero() {
		b.pp.TimeNanos = p.Start.UnixNano()
	}
	b.loop = p.Stall > 0
	if b.loop {
		// Loop mode: stall values after the block-profile ones, and the
		// stall time shown by default (what the user came for).
		b.pp.SampleType = append(b.pp.SampleType,
			&profile.ValueType{Type: "stalls", Unit: "count"},
			&profile.ValueType{Type: "stall_time", Unit: "nanoseconds"},
			&profile.ValueType{Type: "stall_blocked", Unit: "nanoseconds"},
			&profile.ValueType{Type: "stall_runqueue", Unit: "nanoseconds"},
			&profile.ValueType{Type: "stall_oncpu", Unit: "nanoseconds"})
		b.pp.DefaultSampleType = "stall_time"
	}
	b.pp.Comments = append(append([]string(nil), p.Comments...), dropComments(p.Drops)...)
	if b.loop {
		b.pp.Comments = append(b.pp.Comments, loopComments(p)...)
	}

	// pprof treats the first mapping as the program the profile is about: it
	// names it in reports and applies -exec overrides to it.
	if m := mainMapping(p); m != nil {
		b.mapping(m)
	}
	for i := range p.Samples {
		b.sample(&p.Samples[i])
	}
	if err := b.pp.CheckValid(); err != nil {
		return nil, fmt.Errorf("invalid pprof profile: %w", err)
	}
	return b.pp, nil
}

// mainMapping picks the main executable of the process with the most
// blocked time (then the most intervals, then the lowest PID).
func mainMapping(p *Profile) *symbolize.Mapping {
	type weight struct {
		blocked, count int64
	}
	w := map[int]weight{}
	for _, s := range p.Samples {
		x := w[s.PID]
		x.blocked += int64(s.Blocked)
		x.count += s.Count
		w[s.PID] = x
	}
	best := weight{-1, -1}
	var main *symbolize.Mapping
	pids := make([]int, 0, len(p.Processes))
	for pid := range p.Processes {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		pr := p.Processes[pid]
		if pr.Main == nil {
			continue
		}
		x := w[pid]
		if x.blocked > best.blocked || (x.blocked == best.blocked && x.count > best.count) {
			best, main = x, pr.Main
		}
	}
	return main
}

func dropComments(drops map[string]uint64) []string {
	reasons := make([]string, 0, len(drops))
	var total uint64
	for r, n := range drops {
		if n == 0 {
			continue
		}
		reasons = append(reasons, r)
		total += n
	}
	if total == 0 {
		return nil
	}
	sort.Strings(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = r + "=" + strconv.FormatUint(drops[r], 10)
	}
	return []string{fmt.Sprintf("dropped %d events: %s", total, strings.Join(parts, " "))}
}

func (b *builder) mapping(m *symbolize.Mapping) *profile.Mapping {
	if pm, ok := b.mappings[m]; ok {
		return pm
	}
	// Range-less pseudo mappings such as "[blockprof]" are one mapping per
	// name, shared with the ones made up here.
	if m.Start == 0 && m.Limit == 0 && strings.HasPrefix(m.File, "[") {
		if pm, ok := b.pseudo[m.File]; ok {
			b.mappings[m] = pm
			return pm
		}
	}
	pm := &profile.Mapping{
		ID:              uint64(len(b.pp.Mapping) + 1),
		Start:           m.Start,
		Limit:           m.Limit,
		Offset:          m.Offset,
		File:            m.File,
		BuildID:         m.BuildID,
		HasFunctions:    m.HasFunctions,
		HasFilenames:    m.HasFilenames,
		HasLineNumbers:  m.HasLineNumbers,
		HasInlineFrames: m.HasInlineFrames,
	}
	if pm.File == "" {
		// An unnamed mapping would make pprof look for the main binary.
		pm.File = unmappedFile
	}
	if m.Start == 0 && m.Limit == 0 && strings.HasPrefix(pm.File, "[") {
		b.pseudo[pm.File] = pm
	}
	b.mappings[m] = pm
	b.pp.Mapping = append(b.pp.Mapping, pm)
	return pm
}

// pseudoMapping is a bracketed mapping for locations that have no
// symbolize.Mapping of their own.
func (b *builder) pseudoMapping(file string) *profile.Mapping {
	if pm, ok := b.pseudo[file]; ok {
		return pm
	}
	pm := &profile.Mapping{
		ID:           uint64(len(b.pp.Mapping) + 1),
		File:         file,
		HasFunctions: file == syntheticFile,
	}
	b.pseudo[file] = pm
	b.pp.Mapping = append(b.pp.Mapping, pm)
	return pm
}

func (b *builder) sample(s *Sample) {
	ps := &profile.Sample{
		Value:    []int64{s.Count, s.Blocked.Nanoseconds(), s.RunQueue.Nanoseconds()},
		Label:    map[string][]string{},
		NumLabel: map[string][]int64{"pid": {int64(s.PID)}, "tid": {int64(s.TID)}},
	}
	if b.loop {
		var v LoopValues
		if s.Loop != nil {
			v = *s.Loop
		}
		ps.Value = append(ps.Value, v.Stalls, v.Total().Nanoseconds(), v.Blocked.Nanoseconds(),
			v.RunQueue.Nanoseconds(), v.OnCPU.Nanoseconds())
	}
	for k, v := range s.NumLabels {
		if k == "pid" || k == "tid" {
			continue
		}
		ps.NumLabel[k] = []int64{v}
		if u := s.NumUnits[k]; u != "" {
			if ps.NumUnit == nil {
				ps.NumUnit = map[string][]string{}
			}
			ps.NumUnit[k] = []string{u}
		}
	}
	for k, v := range s.Labels {
		// pid and tid are numeric labels; a string twin would split filters.
		if k != "" && v != "" && k != "pid" && k != "tid" {
			ps.Label[k] = []string{v}
		}
	}
	// The fields of Sample win over same-named extra labels.
	for k, v := range map[string]string{"comm": s.Comm, "thread": s.Thread, "state": s.State, "kind": s.Kind} {
		if v != "" {
			ps.Label[k] = []string{v}
		}
	}
	if len(s.Stack) == 0 {
		ps.Location = []*profile.Location{b.location(&symbolize.Location{
			Frames: []symbolize.Frame{{Function: unknownStack}},
		}, b.pseudoMapping(syntheticFile))}
	}
	for i := range s.Stack {
		loc := &s.Stack[i]
		var pm *profile.Mapping
		switch {
		case loc.Mapping != nil:
			pm = b.mapping(loc.Mapping)
		case loc.Address == 0:
			pm = b.pseudoMapping(syntheticFile)
		default:
			pm = b.pseudoMapping(unmappedFile)
		}
		ps.Location = append(ps.Location, b.location(loc, pm))
	}
	b.pp.Sample = append(b.pp.Sample, ps)
}

func (b *builder) location(loc *symbolize.Location, pm *profile.Mapping) *profile.Location {
	names := make([]string, len(loc.Frames))
	for i, f := range loc.Frames {
		names[i] = funcName(f)
	}
	key := locKey{m: pm, addr: loc.Address, names: strings.Join(names, "\x00")}
	if pl, ok := b.locations[key]; ok {
		return pl
	}
	pl := &profile.Location{
		ID:      uint64(len(b.pp.Location) + 1),
		Mapping: pm,
		Address: loc.Address,
	}
	// Frames and pprof Lines share the order: inlined callee first.
	for _, f := range loc.Frames {
		name := funcName(f)
		if name == "" {
			name = addrName(loc)
		}
		sys := f.SystemName
		if sys == "" {
			sys = name
		}
		name = pprofName(name, f.File)
		pl.Line = append(pl.Line, profile.Line{
			Function: b.function(profile.Function{
				Name:       name,
				SystemName: sys,
				Filename:   f.File,
				StartLine:  int64(f.StartLine),
			}),
			Line: int64(f.Line),
		})
	}
	b.locations[key] = pl
	b.pp.Location = append(b.pp.Location, pl)
	return pl
}

func (b *builder) function(f profile.Function) *profile.Function {
	key := funcKey{f.Name, f.SystemName, f.Filename, f.StartLine}
	if pf, ok := b.functions[key]; ok {
		return pf
	}
	pf := &f
	pf.ID = uint64(len(b.pp.Function) + 1)
	b.functions[key] = pf
	b.pp.Function = append(b.pp.Function, pf)
	return pf
}

// pprofName keeps pprof from erasing a name: it drops a leading "<...>"
// as a C++ template argument list, so Python's "<module>" or "<listcomp>"
// would show as nothing. Those get the module's name in front
// ("script.<module>"), as qualified names have the class.
func pprofName(name, file string) string {
	if !strings.HasPrefix(name, "<") || file == "" {
		return name
	}
	return strings.TrimSuffix(path.Base(file), ".py") + "." + name
}

// loopComments are the per-loop-thread lines of the first screen, kept in
// the file.
func loopComments(p *Profile) []string {
	out := []string{fmt.Sprintf("loop mode: a stall is an iteration longer than %s", fmtDur(p.Stall))}
	for _, l := range p.Loops {
		out = append(out, loopHeadline(l)+"; "+loopStallLine(l, p.Stall))
	}
	return out
}
