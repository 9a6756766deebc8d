package engine

import (
	"sort"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/locks"
	"blockprof/profiles"
)

// loadWaiting reads which threads were still waiting when counting
// stopped (none before that: the kernel fills the list at detach).
func (r *recorder) loadWaiting() {
	ws, err := r.src.StillWaiting()
	if err != nil || len(ws) == 0 {
		r.waiting = nil
		return
	}
	r.waiting = map[uint32]attach.Waiting{}
	for _, w := range ws {
		r.waiting[w.TID] = w
	}
	r.until = r.endMono
	if r.until == 0 {
		r.until = attach.Monotonic()
	}
}

// stillWaiting lists, in p, the threads still waiting at the end with the
// sample of their wait, how long it had lasted, and the holder of the
// mutex it waits for where the mutex records one; then the wait cycles.
func (r *recorder) stillWaiting(p *profiles.Profile, threads map[uint32]attach.Thread) {
	if len(r.waiting) == 0 {
		return
	}
	waitsFor := map[int]int{}
	for i := range p.Samples {
		s := &p.Samples[i]
		if s.Labels["cut"] != "after" && s.Labels["cut"] != "both" {
			continue
		}
		w, ok := r.waiting[uint32(s.TID)]
		if !ok {
			continue
		}
		pw := profiles.Waiting{Sample: *s, Waited: s.Blocked + s.RunQueue}
		if v, ok := s.NumLabels["waited"]; ok && time.Duration(v) > pw.Waited {
			pw.Waited = time.Duration(v)
		}
		if addr, ok := r.futexWord(s); ok {
			if owner, ok := locks.MutexOwner(s.PID, s.TID, addr); ok {
				pw.Holder = owner
				pw.HolderName, _ = threadNames(threads, w.TGID, uint32(owner))
				waitsFor[s.TID] = owner
			}
		}
		p.Waiting = append(p.Waiting, pw)
	}
	sort.SliceStable(p.Waiting, func(i, j int) bool { return p.Waiting[i].Waited > p.Waiting[j].Waited })
	p.Deadlocks = locks.Cycles(waitsFor)
}

// futexWord is the address a futex wait of sample s waits on.
func (r *recorder) futexWord(s *profiles.Sample) (uint64, bool) {
	if s.Labels["syscall"] != "futex" {
		return 0, false
	}
	for k, rec := range r.win.agg {
		if int(k.tid) == s.TID && k.cut&attach.CutAfter != 0 && rec.Target != nil && rec.Target.Kind == "futex" {
			return rec.Target.Addr, true
		}
	}
	return 0, false
}
