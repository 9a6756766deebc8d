package profiles

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"blockprof/internal/symbolize"
)

// maxLoopCauses bounds the causes listed per loop thread.
const maxLoopCauses = 5

// loopHeadline is one loop thread's line: iterations, their spread, and
// its stalls.
func loopHeadline(l Loop) string {
	name := l.Thread
	if name == "" {
		name = l.Comm
	}
	if name == "" {
		name = "?"
	}
	s := fmt.Sprintf("%s %d/%d (%s): %s %s, p50 %s p99 %s max %s",
		name, l.PID, l.TID, l.Wait, thousands(l.Iterations), pluralWord(l.Iterations, "iteration"),
		fmtDur(l.P50), fmtDur(l.P99), fmtDur(l.Max))
	return s
}

// loopStallLine says how often and how long a loop thread stalled.
func loopStallLine(l Loop, stall time.Duration) string {
	if l.Stalls == 0 {
		return fmt.Sprintf("no stall > %s", fmtDur(stall))
	}
	s := fmt.Sprintf("stalled %d× > %s, worst %s, %s in all", l.Stalls, fmtDur(stall), fmtDur(l.Worst), fmtDur(l.StallTime))
	if l.Ongoing {
		s += " (still stalled when recording ended)"
	}
	return s
}

// LoopCause is what part of a loop thread's stall time went where.
type LoopCause struct {
	Kind   string        // "blocked", "on CPU", "preempted" (waiting for a CPU)
	Where  string        // innermost telling frames and what was waited on
	Time   time.Duration // stall time
	Stalls int64         // stalls it was the largest part of
}

// LoopCauses groups a loop thread's stall samples by what they did: the
// kind of time, the telling frames by function (lines apart, so on-CPU
// samples of one loop make one cause) and the target. Largest first.
func LoopCauses(p *Profile, tid int, width int) []LoopCause {
	type group struct {
		cause LoopCause
		top   time.Duration
	}
	groups := map[string]*group{}
	for _, s := range p.Samples {
		if s.Loop == nil || s.TID != tid {
			continue
		}
		kind := "blocked"
		switch s.Kind {
		case "on-cpu":
			kind = "on CPU"
			s = userPart(s)
		case "preempted":
			kind = "preempted" // runnable, waiting for a CPU
			s = userPart(s)
		}
		var names []string
		for _, e := range tellingEntries(s, 3) {
			names = append(names, e.name())
		}
		key := kind + "\x00" + strings.Join(names, "\x00") + "\x00" + s.Labels["syscall"] + "\x00" + s.Labels["target"]
		g := groups[key]
		if g == nil {
			g = &group{cause: LoopCause{Kind: kind}}
			groups[key] = g
		}
		t := s.Loop.Total()
		g.cause.Time += t
		g.cause.Stalls += s.Loop.Stalls
		if t > g.top || g.cause.Where == "" {
			g.top = t
			g.cause.Where = where(s, width)
		}
	}
	out := make([]LoopCause, 0, len(groups))
	for _, g := range groups {
		out = append(out, g.cause)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Where < out[j].Where
	})
	return out
}

// writeLoops adds the event-loop section of the first screen: per loop
// thread its iterations, its stalls, and what the stall time went to.
func writeLoops(add func(string, ...any), p *Profile) {
	if p.Stall <= 0 {
		return
	}
	if len(p.Loops) == 0 {
		add("event loops: none found (no thread kept calling one epoll_wait, poll or select)")
		return
	}
	add("event loops (a stall is an iteration, wait return to next wait, longer than %s):", fmtDur(p.Stall))
	for _, l := range p.Loops {
		add("  %s", loopHeadline(l))
		add("    %s", loopStallLine(l, p.Stall))
		causes := LoopCauses(p, l.TID, summaryWidth-30)
		var total time.Duration
		for _, c := range causes {
			total += c.Time
		}
		for i, c := range causes {
			if i == maxLoopCauses {
				add("      … and %d more", len(causes)-maxLoopCauses)
				break
			}
			pct := 0.0
			if total > 0 {
				pct = 100 * float64(c.Time) / float64(total)
			}
			prefix := fmt.Sprintf("    %5.1f%% %7s %-9s ", pct, fmtDur(c.Time), c.Kind)
			add("%s", prefix+clip(c.Where, summaryWidth-utf8.RuneCountInString(prefix)))
		}
	}
}

// userPart is an on-CPU sample as its cause: the code that ran, whether
// the sample caught it in user space or in a syscall it made.
func userPart(s Sample) Sample {
	var user []symbolize.Location
	for _, loc := range s.Stack {
		if !isKernel(&loc) {
			user = append(user, loc)
		}
	}
	if len(user) == 0 {
		return s
	}
	s.Stack, s.Labels = user, nil
	return s
}
