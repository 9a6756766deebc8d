package profiles

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// maxWaiting bounds the lines of the still-waiting section.
const maxWaiting = 8

// writeWaiting writes the section on threads still waiting when the
// recording stopped: for a stuck service, the answer. Threads waiting at
// the same place on the same thing share a line; wait cycles come first.
func writeWaiting(add func(string, ...any), addLines func([]string), p *Profile, width int) {
	if len(p.Waiting) == 0 {
		return
	}
	names := map[int]string{}
	for _, w := range p.Waiting {
		names[w.Sample.TID] = w.Sample.Thread
	}
	add("still blocked when recording stopped (%s):", plural(len(p.Waiting), "thread"))
	for _, cyc := range p.Deadlocks {
		parts := make([]string, len(cyc))
		for i, tid := range cyc {
			parts[i] = fmt.Sprintf("%d %s", tid, names[tid])
		}
		add("  DEADLOCK: %s → back to the first: each waits for a mutex the next one holds",
			strings.Join(parts, " → "))
	}
	type group struct {
		c       culprit
		holder  string
		longest time.Duration
		tids    []int
		idle    bool
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, w := range p.Waiting {
		s := w.Sample
		holder := ""
		switch {
		case w.Holder != 0:
			holder = fmt.Sprintf("held by %d %s", w.Holder, w.HolderName)
		case s.Labels["syscall"] == "futex":
			holder = "holder not recorded"
		}
		c := culpritOf(s)
		key := c.key() + "\x00" + holder
		g := byKey[key]
		if g == nil {
			g = &group{c: c, holder: holder, idle: s.Kind == KindIdle}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.tids = append(g.tids, s.TID)
		g.longest = max(g.longest, w.Waited)
	}
	// Blocking before idle, then longest first (Waiting is sorted).
	sort.SliceStable(groups, func(i, j int) bool { return !groups[i].idle && groups[j].idle })
	add("  %8s  %-22s %s", "waiting", "threads", "where  [on what]")
	for i, g := range groups {
		if i == maxWaiting {
			add("  … and %d more", len(groups)-maxWaiting)
			break
		}
		who := threadList(g.tids, names)
		if g.idle {
			who += " idle"
		}
		prefix := fmt.Sprintf("  %8s  %-22s ", fmtDur(g.longest), clip(who, 22))
		addLines(culpritLines(prefix, g.c, width, len(prefix)))
		if g.holder != "" {
			addLines([]string{strings.Repeat(" ", len(prefix)) + g.holder})
		}
	}
}

// threadList names up to two threads ("1235 worker") and counts the rest.
func threadList(tids []int, names map[int]string) string {
	sort.Ints(tids)
	if len(tids) == 1 {
		return fmt.Sprintf("%d %s", tids[0], names[tids[0]])
	}
	return fmt.Sprintf("%d threads (%d…)", len(tids), tids[0])
}
