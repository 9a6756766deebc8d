package profiles

import (
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"blockprof/internal/symbolize"
)

// ReadPprof reads a pprof profile, as WritePprof writes it, back into a
// Profile as far as the file carries one: samples with their stacks
// (mappings, functions, files, lines, inlining), labels and values (loop
// values included), the start and duration, comments, drop counts, the
// stall threshold and each loop thread's line. The file does not carry
// the latency histograms, nor which processes exited: the syscall table
// stays empty. Other block profiles (Go's, with contentions and delay)
// read too.
func ReadPprof(r io.Reader) (*Profile, error) {
	pp, err := profile.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("read pprof: %w", err)
	}
	p := &Profile{Duration: time.Duration(pp.DurationNanos), Processes: map[int]Process{}}
	if pp.TimeNanos != 0 {
		p.Start = time.Unix(0, pp.TimeNanos).UTC()
	}
	idx := map[string]int{}
	for i, st := range pp.SampleType {
		idx[st.Type] = i
	}
	val := func(s *profile.Sample, typ string) int64 {
		if i, ok := idx[typ]; ok && i < len(s.Value) {
			return s.Value[i]
		}
		return 0
	}
	_, loopMode := idx["stall_time"]
	for _, c := range pp.Comments {
		switch {
		case strings.HasPrefix(c, "dropped "):
			p.Drops = parseDrops(c)
		case strings.HasPrefix(c, loopModePrefix):
			p.Stall = parseDur(strings.TrimPrefix(c, loopModePrefix))
		default:
			if l, ok := parseLoopComment(c); ok {
				p.Loops = append(p.Loops, l)
				continue
			}
			p.Comments = append(p.Comments, c)
		}
	}
	if loopMode && p.Stall <= 0 {
		p.Stall = time.Nanosecond // loop mode, threshold not recorded
	}

	mappings := map[*profile.Mapping]*symbolize.Mapping{}
	mapping := func(pm *profile.Mapping) *symbolize.Mapping {
		if pm == nil {
			return nil
		}
		if m, ok := mappings[pm]; ok {
			return m
		}
		m := &symbolize.Mapping{Start: pm.Start, Limit: pm.Limit, Offset: pm.Offset, File: pm.File,
			BuildID: pm.BuildID, HasFunctions: pm.HasFunctions, HasFilenames: pm.HasFilenames,
			HasLineNumbers: pm.HasLineNumbers, HasInlineFrames: pm.HasInlineFrames}
		if m.File == unmappedFile {
			m = nil
		}
		mappings[pm] = m
		return m
	}
	if len(pp.Mapping) > 0 {
		mapping(pp.Mapping[0])
	}
	for _, ps := range pp.Sample {
		s := Sample{
			Count:    val(ps, "contentions"),
			Blocked:  time.Duration(val(ps, "delay")),
			RunQueue: time.Duration(val(ps, "runqueue")),
			Labels:   map[string]string{},
		}
		for k, vs := range ps.Label {
			if len(vs) == 0 {
				continue
			}
			switch k {
			case "comm":
				s.Comm = vs[0]
			case "thread":
				s.Thread = vs[0]
			case "state":
				s.State = vs[0]
			case "kind":
				s.Kind = vs[0]
			default:
				s.Labels[k] = vs[0]
			}
		}
		for k, vs := range ps.NumLabel {
			if len(vs) == 0 {
				continue
			}
			switch k {
			case "pid":
				s.PID = int(vs[0])
			case "tid":
				s.TID = int(vs[0])
			default:
				unit := ""
				if us := ps.NumUnit[k]; len(us) > 0 {
					unit = us[0]
				}
				s.SetNum(k, vs[0], unit)
			}
		}
		if loopMode {
			v := LoopValues{Stalls: val(ps, "stalls"), Blocked: time.Duration(val(ps, "stall_blocked")),
				RunQueue: time.Duration(val(ps, "stall_runqueue")), OnCPU: time.Duration(val(ps, "stall_oncpu"))}
			if v.Stalls != 0 || v.Total() != 0 {
				s.Loop = &v
			}
		}
		for _, pl := range ps.Location {
			loc := symbolize.Location{Address: pl.Address, Mapping: mapping(pl.Mapping)}
			for _, ln := range pl.Line {
				if ln.Function == nil {
					continue
				}
				f := ln.Function
				loc.Frames = append(loc.Frames, symbolize.Frame{
					Function: unPprofName(f.Name, f.Filename), SystemName: f.SystemName,
					File: f.Filename, Line: int(ln.Line), StartLine: int(f.StartLine),
				})
			}
			s.Stack = append(s.Stack, loc)
		}
		if len(s.Stack) == 1 && len(s.Stack[0].Frames) == 1 && s.Stack[0].Frames[0].Function == unknownStack {
			s.Stack = nil // written for an empty stack
		}
		if s.Comm == "" && s.PID != 0 {
			s.Comm = "pid " + strconv.Itoa(s.PID)
		}
		if _, ok := p.Processes[s.PID]; !ok && s.PID != 0 {
			p.Processes[s.PID] = Process{PID: s.PID, Comm: s.Comm}
		}
		p.Samples = append(p.Samples, s)
	}
	return p, nil
}

// loopModePrefix starts the comment that records the stall threshold.
const loopModePrefix = "loop mode: a stall is an iteration longer than "

// unPprofName undoes pprofName: "sleep.<module>" in sleep.py is
// "<module>" again.
func unPprofName(name, file string) string {
	if file == "" {
		return name
	}
	mod := strings.TrimSuffix(path.Base(file), ".py") + "."
	if rest, ok := strings.CutPrefix(name, mod); ok && strings.HasPrefix(rest, "<") {
		return rest
	}
	return name
}

// parseDrops reads "dropped 12 events: a=10 b=2".
func parseDrops(c string) map[string]uint64 {
	out := map[string]uint64{}
	_, list, _ := strings.Cut(c, ": ")
	for _, kv := range strings.Fields(list) {
		k, v, ok := strings.Cut(kv, "=")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			out[k] = n
		}
	}
	return out
}

// loopComment matches loopHeadline + "; " + loopStallLine.
var loopComment = regexp.MustCompile(`^(.*) (\d+)/(\d+) \(([^)]*)\): ([\d,]+) iterations?, p50 (\S+) p99 (\S+) max (\S+); ` +
	`(?:no stall > \S+|stalled (\d+)× > \S+, worst (\S+), (\S+) in all( \(still stalled when recording ended\))?)$`)

func parseLoopComment(c string) (Loop, bool) {
	m := loopComment.FindStringSubmatch(c)
	if m == nil {
		return Loop{}, false
	}
	atoi := func(s string) int64 {
		n, _ := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
		return n
	}
	l := Loop{PID: int(atoi(m[2])), TID: int(atoi(m[3])), Comm: m[1], Thread: m[1], Wait: m[4],
		Iterations: atoi(m[5]), P50: parseDur(m[6]), P99: parseDur(m[7]), Max: parseDur(m[8])}
	if m[9] != "" {
		l.Stalls, l.Worst, l.StallTime, l.Ongoing = atoi(m[9]), parseDur(m[10]), parseDur(m[11]), m[12] != ""
	}
	return l, true
}

// parseDur reads fmtDur's output back ("402.0ms", "74µs", "1.61s",
// "0s"), to its precision.
func parseDur(s string) time.Duration {
	d, err := time.ParseDuration(strings.ReplaceAll(s, "µ", "u"))
	if err != nil {
		return 0
	}
	return d
}
