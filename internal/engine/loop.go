package engine

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/syscalls"
	"blockprof/profiles"
)

// Loop mode, user-space half. The kernel tags every off-CPU interval and
// on-CPU sample of a loop thread with the iteration it fell in, and
// reports each stall (an iteration longer than --stall) on a ring. Here
// the tagged records wait until their iteration is decided: kept if it was
// a stall, dropped if not.
//
// When is an iteration decided? The kernel bumps a thread's done_seq right
// after it reported the iteration's stall (if any). So: read done_seq
// first, then empty the ring; every stall up to done_seq is then known.

// loopIter is one iteration of one loop thread.
type loopIter struct{ tid, seq uint32 }

// loopRecord is a tagged record with its resolved Python frames.
type loopRecord struct {
	rec attach.Record // a copy: the ordinary profile merges into its own
	py  string
}

// loopStall is one stall with what happened inside it.
type loopStall struct {
	ev      attach.LoopEvent
	ongoing bool // still running at the end: End is the end of recording
	recs    []loopRecord
}

type loopTracker struct {
	stall   time.Duration
	pending map[loopIter][]loopRecord
	stalls  map[loopIter]*loopStall
	order   []loopIter // stalls in the order reported
	threads map[uint32]attach.LoopThread
	lost    uint64 // tagged records of an iteration that was abandoned or never decided
	// base is each thread's counters at the last window's end (Snapshot).
	base map[uint32]attach.LoopThread
}

func newLoopTracker(stall time.Duration) *loopTracker {
	return &loopTracker{stall: stall, pending: map[loopIter][]loopRecord{},
		stalls: map[loopIter]*loopStall{}, threads: map[uint32]attach.LoopThread{}, base: map[uint32]attach.LoopThread{}}
}

// poll takes the loop threads' state and then the stalls reported so far
// (in that order: see the top).
func (t *loopTracker) poll(src source) error {
	threads, err := src.LoopThreads()
	if err != nil {
		return err
	}
	events, err := src.LoopEvents()
	for _, e := range events {
		if e.Kind != attach.LoopStall {
			continue
		}
		it := loopIter{e.TID, e.Seq}
		if t.stalls[it] == nil {
			t.stalls[it] = &loopStall{ev: e}
			t.order = append(t.order, it)
		}
	}
	for _, th := range threads {
		t.threads[th.TID] = th
	}
	return err
}

// add files one tagged record under its iteration.
func (t *loopTracker) add(rec *attach.Record, py string) {
	it := loopIter{rec.TID, rec.LoopSeq}
	lr := loopRecord{rec: *rec, py: py}
	if st := t.stalls[it]; st != nil {
		st.recs = append(st.recs, lr)
		return
	}
	if t.decided(it) {
		return // a fast iteration
	}
	t.pending[it] = append(t.pending[it], lr)
}

func (t *loopTracker) decided(it loopIter) bool {
	th, ok := t.threads[it.tid]
	return ok && it.seq <= th.DoneSeq
}

// settle moves the records of decided iterations to their stall, or drops them.
func (t *loopTracker) settle() {
	for it, recs := range t.pending {
		if st := t.stalls[it]; st != nil {
			st.recs = append(st.recs, recs...)
			delete(t.pending, it)
		} else if t.decided(it) {
			delete(t.pending, it)
		}
	}
}

// finish closes the books at the end of the recording (now, on the
// kernel's clock): an iteration still running and already longer than the
// threshold is a stall in progress, the worst kind.
func (t *loopTracker) finish(now time.Duration) {
	t.settle()
	for _, th := range t.threads {
		if !th.InIteration || now-th.IterStart < t.stall || !loopAlive(th) {
			continue
		}
		it := loopIter{th.TID, th.Seq}
		if t.stalls[it] != nil {
			continue
		}
		st := &loopStall{ongoing: true, recs: t.pending[it], ev: attach.LoopEvent{
			Kind: attach.LoopStall, TGID: th.TGID, TID: th.TID, Seq: th.Seq, Start: th.IterStart, End: now}}
		for _, r := range st.recs {
			if r.rec.Kind != attach.OnCPU {
				st.ev.OffCPU += r.rec.Blocked + r.rec.RunQueue
			}
		}
		t.stalls[it] = st
		t.order = append(t.order, it)
		delete(t.pending, it)
	}
	for _, recs := range t.pending {
		t.lost += uint64(len(recs))
	}
	t.pending = map[loopIter][]loopRecord{}
}

// cut ends a window (Snapshot): its stalls were reported and are
// forgotten (records of theirs drained later are dropped, as those of a
// fast iteration), and the threads' counters so far become the next
// window's base.
func (t *loopTracker) cut() {
	for _, it := range t.order {
		delete(t.stalls, it)
	}
	t.order = nil
	t.lost = 0
	for tid, th := range t.threads {
		t.base[tid] = th
	}
}

// loopAlive is true while a loop thread lives and its loop does: for an
// epoll loop, its epoll fd is still open. A program that closed its loop
// (asyncio.run returned) or exited is not stalled.
func loopAlive(th attach.LoopThread) bool {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", th.TGID, th.TID)); err != nil {
		return false
	}
	if th.Wait>>56 != 1 {
		return true
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", th.TGID, uint32(th.Wait)))
	return err == nil && strings.Contains(link, "eventpoll")
}

// loopShare is one record's part in the stalls, summed over them.
type loopShare struct {
	rec attach.Record
	py  string
	v   profiles.LoopValues
}

// shares splits every stall's time over what happened inside it: off-CPU
// intervals count as they are; the rest of the stall ran on the CPU, and
// is split over the stall's on-CPU samples by their count (without
// samples it goes to one "[on CPU, not sampled]" share). The stall itself
// is counted once, on its largest part.
func (t *loopTracker) shares() []*loopShare {
	byKey := map[recordKey]*loopShare{} // the key holds the kind: on-CPU apart
	var out []*loopShare
	get := func(lr loopRecord) *loopShare {
		k := recordKeyOf(&lr.rec, lr.py)
		if sh := byKey[k]; sh != nil {
			return sh
		}
		sh := &loopShare{rec: lr.rec, py: lr.py}
		byKey[k] = sh
		out = append(out, sh)
		return sh
	}
	for _, it := range t.order {
		st := t.stalls[it]
		length := st.ev.End - st.ev.Start
		onCPU := max(length-st.ev.OffCPU, 0)
		var samples uint64
		for _, r := range st.recs {
			if r.rec.Kind == attach.OnCPU {
				samples += r.rec.Count
			}
		}
		// This stall's parts by share: its largest gets the stall.
		part := map[*loopShare]time.Duration{}
		for _, r := range st.recs {
			sh := get(r)
			var d time.Duration
			if r.rec.Kind == attach.OnCPU {
				d = time.Duration(float64(onCPU) * float64(r.rec.Count) / float64(samples))
				sh.v.OnCPU += d
			} else {
				d = r.rec.Blocked + r.rec.RunQueue
				sh.v.Blocked += r.rec.Blocked
				sh.v.RunQueue += r.rec.RunQueue
			}
			part[sh] += d
		}
		if samples == 0 && onCPU > 0 {
			sh := get(loopRecord{rec: attach.Record{TGID: st.ev.TGID, TID: st.ev.TID, Kind: attach.OnCPU, SysNr: -1, Fd: -1,
				UserStackID: -1, KernelStackID: -1}, py: unsampledKey})
			sh.v.OnCPU += onCPU
			part[sh] += onCPU
		}
		var largest *loopShare
		for sh, d := range part {
			if largest == nil || d > part[largest] {
				largest = sh
			}
		}
		if largest != nil {
			largest.v.Stalls++
		}
	}
	return out
}

// unsampledKey marks the share of on-CPU time no sample fell in.
const unsampledKey = "\x00unsampled"

// loops summarises each loop thread for the first screen.
func (t *loopTracker) loops(threads map[uint32]attach.Thread) []profiles.Loop {
	var out []profiles.Loop
	for _, th := range t.threads {
		// The window's part of the kernel's counters.
		iterations, hist := th.Iterations, th.Hist
		if b, ok := t.base[th.TID]; ok {
			iterations -= min(b.Iterations, iterations)
			for i := range hist {
				hist[i] -= min(b.Hist[i], hist[i])
			}
		}
		l := profiles.Loop{PID: int(th.TGID), TID: int(th.TID), Wait: syscalls.Name(int64(th.SysNr)),
			Iterations: int64(iterations), Max: th.Max}
		l.Thread, l.Comm = threadNames(threads, th.TGID, th.TID)
		l.P50 = percentile(hist[:], iterations, 0.50, loopBucketEdge, th.Max)
		l.P99 = percentile(hist[:], iterations, 0.99, loopBucketEdge, th.Max)
		for _, it := range t.order {
			if it.tid != th.TID {
				continue
			}
			st := t.stalls[it]
			d := st.ev.End - st.ev.Start
			l.Stalls++
			l.StallTime += d
			l.Worst = max(l.Worst, d)
			l.Ongoing = l.Ongoing || st.ongoing
		}
		l.Max = max(l.Max, l.Worst)
		if l.Iterations == 0 && l.Stalls == 0 {
			continue // elected at attach (blocked in a wait) but never woke: nothing to say
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].StallTime != out[j].StallTime {
			return out[i].StallTime > out[j].StallTime
		}
		return out[i].TID < out[j].TID
	})
	return out
}

// loopBucketEdge is the upper edge of an iteration histogram bucket.
func loopBucketEdge(b int) time.Duration {
	_, hi := attach.LoopBucketBounds(b)
	return hi
}

// loopSamples turns the stall shares into profile samples.
func (r *recorder) loopSamples(p *profiles.Profile, threads map[uint32]attach.Thread) {
	for _, sh := range r.loop.shares() {
		var s profiles.Sample
		if sh.py == unsampledKey {
			s = profiles.Sample{PID: int(sh.rec.TGID), TID: int(sh.rec.TID), Kind: attach.OnCPU.String(), State: "R",
				Labels: map[string]string{"syscall": "none"}}
			s.Thread, s.Comm = threadNames(threads, sh.rec.TGID, sh.rec.TID)
			s.Stack = append(s.Stack, profiles.SyntheticLocation("[on CPU, not sampled]"))
		} else {
			var ok bool
			if s, ok = r.sample(p, &sh.rec, sh.py, threads, true); !ok {
				continue
			}
		}
		if sh.rec.Kind == attach.OnCPU {
			s.State = "R"
		}
		s.Count, s.Blocked, s.RunQueue = 0, 0, 0
		delete(s.NumLabels, "bytes") // summed per interval, not per stall
		s.Labels["loop"] = "stall"
		v := sh.v
		s.Loop = &v
		p.Samples = append(p.Samples, s)
	}
	p.Loops = r.loop.loops(threads)
	p.Stall = r.cfg.Loop.Stall
	if r.loop.lost > 0 {
		p.Comments = append(p.Comments, fmt.Sprintf("%d loop records of iterations never decided (thread re-elected its loop wait, or gone)", r.loop.lost))
	}
}
