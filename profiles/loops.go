package profiles

import (
	"fmt"
	"sort"
	"strings"
	"time"

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

// LoopHandler is what one handler (an application frame) did to a loop
// thread's stalls: its stall time split into blocked, on-CPU and
// run-queue time, the stalls it was the largest part of, and what it
// waited on.
type LoopHandler struct {
	// Handler is the application frame, "get_user (app.py:118)" (the
	// heaviest line of the function); Func its function. Without an
	// application frame on the stack: the frame that tells most.
	Handler, Func string
	// App: Handler is the application's own frame.
	App    bool
	Stalls int64
	// Time is the stall time; Blocked + OnCPU + RunQueue add up to it.
	Time, Blocked, OnCPU, RunQueue time.Duration
	// WaitedOn is what its blocked time waited on, heaviest first, as
	// the first screen shows it: "→ redis blpop  [recvfrom tcp →
	// 127.0.0.1:6379 (redis)]", "[read fifo /tmp/x]".
	WaitedOn []string
	c        culprit // the heaviest blocked member's, else the heaviest one's
}

// LoopHandlers groups a loop thread's stall samples by application
// frame (lines apart: a handler is one row however many lines of it
// stalled), largest stall time first.
func LoopHandlers(p *Profile, tid int) []LoopHandler {
	type group struct {
		h               LoopHandler
		top, topBlocked time.Duration
		waits           map[string]time.Duration
		calls           map[string]time.Duration
	}
	groups := map[string]*group{}
	for _, s := range p.Samples {
		if s.Loop == nil || s.TID != tid {
			continue
		}
		if s.Kind == "on-cpu" || s.Kind == "preempted" {
			s = userPart(s)
		}
		c := culpritOf(s)
		key := c.app
		if c.found && c.appE != nil && c.appE.frame != nil {
			key = c.appFunc + "\x00" + c.appE.frame.File
		}
		g := groups[key]
		if g == nil {
			g = &group{h: LoopHandler{Func: c.appFunc, App: c.found}, waits: map[string]time.Duration{},
				calls: map[string]time.Duration{}}
			groups[key] = g
		}
		v := s.Loop
		t := v.Total()
		g.h.Time += t
		g.h.Blocked += v.Blocked
		g.h.OnCPU += v.OnCPU
		g.h.RunQueue += v.RunQueue
		g.h.Stalls += v.Stalls
		g.calls[c.app] += t
		if t > g.top && g.topBlocked == 0 {
			g.top, g.h.c = t, c
		}
		if v.Blocked > 0 {
			w := c.waitedOn()
			if c.call != "" {
				w = strings.TrimSpace("→ " + c.call + "  " + w)
			}
			g.waits[w] += v.Blocked
			if v.Blocked > g.topBlocked {
				g.topBlocked, g.h.c = v.Blocked, c
			}
		}
	}
	out := make([]LoopHandler, 0, len(groups))
	for _, g := range groups {
		g.h.Handler = heaviest(g.calls)
		g.h.c.app = g.h.Handler
		g.h.WaitedOn = byWeight(g.waits)
		out = append(out, g.h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Handler < out[j].Handler
	})
	return out
}

// heaviest is the name with the largest weight (then the first by name).
func heaviest(m map[string]time.Duration) string {
	if l := byWeight(m); len(l) > 0 {
		return l[0]
	}
	return ""
}

// byWeight lists names heaviest first.
func byWeight(m map[string]time.Duration) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	return names
}

// maxLoopHandlers bounds the handlers listed per loop thread.
const maxLoopHandlers = 8

// writeLoops adds the event-loop section of the first screen: per loop
// thread its iterations, its stalls, and a table of the handlers the
// stall time went to.
func writeLoops(add func(string, ...any), addLines func([]string), p *Profile, width int) {
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
		all := LoopHandlers(p, l.TID)
		// A handler that was the largest part of no stall and a sliver of
		// the stall time did not cause stalls: it ran (or waited for the
		// GIL, a CPU) inside iterations others made long. Those are
		// summed in one line, not named.
		var total time.Duration
		for _, h := range all {
			total += h.Time
		}
		var hs, rest []LoopHandler
		for _, h := range all {
			if h.Stalls > 0 || h.Time*20 >= total {
				hs = append(hs, h)
			} else {
				rest = append(rest, h)
			}
		}
		minor := ", minor"
		if len(hs) > maxLoopHandlers {
			rest = append(hs[maxLoopHandlers:], rest...)
			hs = hs[:maxLoopHandlers]
			minor = ""
		}
		if len(all) == 0 {
			continue
		}
		add("    %9s %6s %8s %8s %8s  %s", "stall", "stalls", "blocked", "on CPU", "run-q",
			"handler → call  [what it waited on]")
		for _, h := range hs {
			prefix := fmt.Sprintf("    %9s %6s %8s %8s %8s  ", fmtDur(h.Time), thousands(h.Stalls),
				fmtDur(h.Blocked), fmtDur(h.OnCPU), fmtDur(h.RunQueue))
			c := h.c
			if h.Blocked == 0 {
				c.peer, c.kernel, c.syscall = "", "", ""
			}
			ls := culpritLines(prefix, c, width, 10)
			if n := len(h.WaitedOn); n > 1 {
				more := fmt.Sprintf(" +%d more", n-1)
				if runes(ls[len(ls)-1]+more) <= width {
					ls[len(ls)-1] += more
				}
			}
			addLines(ls)
		}
		if len(rest) > 0 {
			var t time.Duration
			var n int64
			for _, h := range rest {
				t += h.Time
				n += h.Stalls
			}
			add("    %9s %6s %8s %8s %8s  … and %d more%s", fmtDur(t), thousands(n), "", "", "", len(rest), minor)
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
