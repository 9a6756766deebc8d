package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"blockprof/profiles"
)

// serveStats are serve's counters, for /metrics and the last line.
type serveStats struct {
	mu sync.Mutex
	serveCounts
	drops map[string]uint64
	spans int // spans under way
	open  int // spans started (cut) and not yet answered
}

func (s *serveStats) setOpen(n int) { s.mu.Lock(); s.open = n; s.mu.Unlock() }

type serveCounts struct {
	windows, slices, spansServed int64
	intervals                    uint64
	targets                      int64
	pushed, pushFailures         int64
	pushDrops                    int64
}

func (s *serveStats) addSlice(p *profiles.Profile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slices++
	for i := range p.Samples {
		s.intervals += uint64(p.Samples[i].Count)
	}
	for k, v := range p.Drops {
		s.drops[k] += v
	}
}

func (s *serveStats) addWindow() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows++
	return s.windows
}

func (s *serveStats) addSpan() { s.mu.Lock(); s.spansServed++; s.mu.Unlock() }

func (s *serveStats) addTargets(n int) { s.mu.Lock(); s.targets += int64(n); s.mu.Unlock() }

// beginSpan counts a span under way, false when maxSpans already are.
func (s *serveStats) beginSpan() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spans >= maxSpans {
		return false
	}
	s.spans++
	return true
}

func (s *serveStats) endSpan() { s.mu.Lock(); s.spans--; s.mu.Unlock() }

func (s *serveStats) push(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.pushed++
	} else {
		s.pushFailures++
	}
}

// pushDrop counts a window not pushed, and returns the count so far.
func (s *serveStats) pushDrop() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushDrops++
	return s.pushDrops
}

// statsView is a copy of the counters.
type statsView struct {
	serveCounts
	drops map[string]uint64
	open  int
}

func (s *serveStats) get() statsView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := statsView{serveCounts: s.serveCounts, drops: map[string]uint64{}, open: s.open}
	for k, n := range s.drops {
		v.drops[k] = n
	}
	return v
}

// write prints the counters in Prometheus' text format.
func (v statsView) write(w io.Writer, rss int64) {
	metric := func(name, typ, help string, value any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, value)
	}
	metric("blockprof_windows_total", "counter", "Complete windows.", v.windows)
	metric("blockprof_intervals_total", "counter", "Off-CPU intervals recorded.", v.intervals)
	metric("blockprof_targets_total", "counter", "Target processes added.", v.targets)
	metric("blockprof_spans_total", "counter", "On-demand profiles served (?seconds=N).", v.spansServed)
	metric("blockprof_spans_open", "gauge", "On-demand profiles recording now.", v.open)
	fmt.Fprintf(w, "# HELP blockprof_drops_total Events lost, by reason.\n# TYPE blockprof_drops_total counter\n")
	reasons := make([]string, 0, len(v.drops))
	for k := range v.drops {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(w, "blockprof_drops_total{reason=%q} %d\n", k, v.drops[k])
	}
	metric("blockprof_push_total", "counter", "Windows pushed.", v.pushed)
	metric("blockprof_push_failures_total", "counter", "Push attempts that failed (each retried or dropped).", v.pushFailures)
	metric("blockprof_push_dropped_total", "counter", "Windows never pushed: queue full or retries exhausted.", v.pushDrops)
	if rss >= 0 {
		metric("blockprof_resident_memory_bytes", "gauge", "Resident set size of blockprof itself (VmRSS).", rss)
	}
}

// selfRSS is VmRSS of /proc/self/status in bytes, -1 if unreadable.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n * 1024
				}
			}
		}
	}
	return -1
}
