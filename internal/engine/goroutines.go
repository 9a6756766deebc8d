package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"blockprof/internal/attach"
	"blockprof/internal/goroutines"
	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

// KindGoroutine is the Sample.Kind of a goroutine's park (Config.Goroutines):
// a goroutine blocked, not a thread; threads parked in the Go scheduler
// meanwhile stay idle, so no time is counted twice.
const KindGoroutine = "goroutine"

// gorKey identifies one goroutine aggregation bucket across drains.
type gorKey struct {
	tgid       uint32
	goid       uint64
	code       uint32
	stack      uint64
	target     *attach.Target
	wakerStack uint64
}

// openGoroutines loads the goroutine programs (Config.Goroutines); a
// failure is a warning: threads are still recorded.
func (r *recorder) openGoroutines() {
	s, err := goroutines.Open(goroutines.Options{WakerStacks: r.cfg.WakerStacks})
	if err != nil {
		r.warn("warning: goroutines not recorded: %v", err)
		return
	}
	r.gor = s
	r.gorTried = map[uint32]bool{}
}

// addGoroutines hooks the Go runtime of process tgid, if it is a Go
// program of a version whose offsets are known; otherwise one warning and
// thread stacks only.
func (r *recorder) addGoroutines(tgid uint32) {
	if r.gor == nil || r.gorTried[tgid] {
		return
	}
	r.gorTried[tgid] = true
	exe := fmt.Sprintf("/proc/%d/exe", tgid)
	b, err := goroutines.Inspect(exe)
	if errors.Is(err, goroutines.ErrNotGo) {
		return
	}
	if err == nil {
		err = r.gor.Add(int(tgid), exe, b)
	}
	if err != nil {
		r.warn("warning: pid %d: goroutines not recorded, thread stacks only: %v", tgid, err)
	}
}

func (r *recorder) drainGoroutines() error {
	if r.gor == nil {
		return nil
	}
	parks, err := r.gor.Drain()
	if err != nil {
		return err
	}
	w := &r.win
	for i := range parks {
		p := &parks[i]
		k := gorKey{p.TGID, p.GoID, p.Code, p.StackKey, p.Target, p.WakerStackKey}
		if _, ok := r.procs[p.TGID]; !ok {
			r.attachProcess(p.TGID)
		}
		if have, ok := w.gor[k]; ok {
			have.Count += p.Count
			have.Blocked += p.Blocked
			have.RunQueue += p.RunQueue
			have.Unsplit += p.Unsplit
			continue
		}
		w.gor[k] = p
	}
	return nil
}

// runtimeIdle are the wait reasons of the runtime's own goroutines
// waiting for work: idle, as the scheduler's parked threads are.
var runtimeIdle = map[string]bool{
	"GC sweep wait": true, "GC scavenge wait": true, "finalizer wait": true, "force gc (idle)": true,
	"GC worker (idle)": true, "GC worker (active)": true, "GOMAXPROCS updater (idle)": true,
	"cleanup wait": true, "trace reader (blocked)": true, "GC weak to strong wait": true,
}

// goroutineSamples turns the window's goroutine parks into samples.
func (r *recorder) goroutineSamples(p *profiles.Profile, threads map[uint32]attach.Thread) {
	for _, park := range r.win.gor {
		s := profiles.Sample{
			PID: int(park.TGID), Kind: KindGoroutine, State: "W",
			Count: int64(park.Count), Blocked: park.Blocked, RunQueue: park.RunQueue,
			Thread: "goroutine " + strconv.FormatUint(park.GoID, 10),
			Labels: map[string]string{"goid": strconv.FormatUint(park.GoID, 10), "wait_reason": park.Reason},
		}
		_, s.Comm = threadNames(threads, park.TGID, park.TGID)
		proc := r.procs[park.TGID]
		s.Stack = r.goStack(p, proc, park.Stack, park.Count)
		if park.Truncated {
			s.Stack = append(s.Stack, profiles.SyntheticLocation("[truncated: deeper than the goroutine stack limit]"))
		}
		target := ""
		if park.Target != nil {
			target = park.Target.String()
			s.Labels["target"] = target
		}
		if r.cfg.Target != nil && !r.cfg.Target.MatchString(target) {
			continue
		}
		if fn := wakerFunc(proc, park.WakerStack); fn != "" {
			s.Labels["waker_func"] = fn
		}
		if park.Unsplit > 0 {
			s.SetNum("unsplit", int64(park.Unsplit), "count")
		}
		switch {
		case runtimeIdle[park.Reason] || runtimeOnly(s.Stack):
			// The runtime's own goroutines waiting for work (the
			// scavenger parks with reason "sleep").
			s.Kind = profiles.KindIdle
			s.Labels["idle"] = "go-runtime"
		case park.Reason == "IO wait" && hasFunc(s.Stack, ".accept"):
			s.Kind = profiles.KindIdle
			s.Labels["idle"] = "accept"
		}
		if r.cfg.TargetFrames {
			leaf := "[" + park.Reason + "]"
			if park.Target != nil {
				leaf = "[" + park.Reason + " " + park.Target.Short() + "]"
			}
			s.Stack = append([]symbolize.Location{profiles.SyntheticLocation(leaf)}, s.Stack...)
		}
		p.Samples = append(p.Samples, s)
	}
}

// goStack symbolizes a park's stack: every address is a return address.
func (r *recorder) goStack(p *profiles.Profile, proc *symbolize.Process, stack []uint64, count uint64) []symbolize.Location {
	if len(stack) == 0 {
		return nil
	}
	sites := callSites(stack)
	sites[0]-- // the first is a return address too (from gopark's caller)
	if proc == nil {
		p.Drops["user_symbols_process_gone"] += count
		locs := make([]symbolize.Location, len(sites))
		for i, a := range sites {
			locs[i] = symbolize.Location{Address: a}
		}
		return locs
	}
	return proc.Locations(sites)
}

// wakerFunc names the waking goroutine's innermost function outside the
// runtime ("" when unknown: no waker stacks, or a wakeup from the
// scheduler itself, such as a timer).
func wakerFunc(proc *symbolize.Process, stack []uint64) string {
	if proc == nil || len(stack) == 0 {
		return ""
	}
	sites := callSites(stack)
	sites[0]--
	for _, loc := range proc.Locations(sites) {
		for _, f := range loc.Frames {
			if !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/") &&
				!strings.HasPrefix(f.Function, "sync.") && f.Function != "" {
				return f.Function
			}
		}
	}
	return ""
}

// runtimeOnly: every frame of a symbolized stack is the runtime's.
func runtimeOnly(stack []symbolize.Location) bool {
	n := 0
	for _, loc := range stack {
		for _, f := range loc.Frames {
			if !strings.HasPrefix(f.Function, "runtime.") {
				return false
			}
			n++
		}
	}
	return n > 0
}

func hasFunc(stack []symbolize.Location, suffix string) bool {
	for _, loc := range stack {
		for _, f := range loc.Frames {
			if strings.HasSuffix(f.Function, suffix) {
				return true
			}
		}
	}
	return false
}
