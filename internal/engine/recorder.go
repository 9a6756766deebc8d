package engine

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/goroutines"
	"blockprof/internal/idle"
	"blockprof/internal/symbolize"
	"blockprof/internal/syscalls"
	"blockprof/profiles"
)

// recordKey identifies one aggregation bucket across drains: stack IDs are
// stable for the whole session.
type recordKey struct {
	tgid, tid      uint32
	ustack, kstack int32
	state          uint32
	kind           attach.Kind
	sysnr          int32
	fd             int32
	target         *attach.Target // one pointer per target for the session
	waker          attach.Waker
	py             string // resolved Python frames (key of recorder.pyLocs), "" if none
	uhash          uint64 // table-unwound user stack, 0 for frame pointers
	cut            attach.Cut
}

// recordKeyOf is a record's key, with its resolved Python frames' key.
func recordKeyOf(r *attach.Record, py string) recordKey {
	return recordKey{r.TGID, r.TID, r.UserStackID, r.KernelStackID, r.State, r.Kind, r.SysNr, r.Fd, r.Target, r.Waker, py, r.UserStackHash, r.Cut}
}

// recorder accumulates what the kernel aggregated, drain after drain.
type recorder struct {
	cfg   Config
	src   source
	sym   *symbolize.Symbolizer
	procs map[uint32]*symbolize.Process
	win   window
	// began: Start was called; attached: counting started.
	began, attached time.Time
	endMono         time.Duration // when counting stopped, on the kernel's clock
	// Threads still waiting when counting stopped, and that moment
	// (CLOCK_MONOTONIC), for the waits' labels (see waiting.go).
	waiting    map[uint32]attach.Waiting
	until      time.Duration
	drains     int
	ignoreTIDs map[uint32]bool   // threads of the exec gate, not of the command
	unwSig     map[uint32]string // executable mappings as last given to the unwinder
	unwWarned  bool
	// Kernel counters are for the whole session: their values at the
	// last window's end, to report a window's part.
	lastDrops map[string]uint64
	// Followed processes that exited, by the drain count when that was
	// seen: their state is let go once their last records are drained
	// (see forgetExited). exited keeps what the window's profile lists of
	// those let go.
	gone   map[uint32]int
	exited map[uint32]profiles.Process
	// Exited children whose mappings were never read after their exec
	// (see watchProcs): their user frames count apart.
	unread map[uint32]bool
	// Repeated warnings: how many of each kind were held back.
	warned map[string]*warnCount

	// Python targets (python.go).
	python bool   // the frame walker is loaded
	child  uint32 // the launched command's pid, 0 with -p
	pys    map[uint32]*pyProc
	pyLocs map[string][]symbolize.Location
	pyUsed map[string]bool // pyLocs keys used in the current window

	loop *loopTracker // loop mode (loop.go), nil when off

	// Goroutine parks (goroutines.go), nil when off; processes tried.
	gor      *goroutines.Session
	gorTried map[uint32]bool
}

// window is what was drained since the last snapshot.
type window struct {
	start, end        time.Time
	agg               map[recordKey]*attach.Record
	gor               map[gorKey]*goroutines.Park
	blocked, runQueue time.Duration
	intervals         uint64
	pyUnresolved      uint64 // intervals with a Python frame that could not be named
	// byProc lists the keys of each process (to resolve an exited
	// process's user frames before letting it go); user holds those
	// resolved frames.
	byProc map[uint32][]recordKey
	user   map[recordKey][]symbolize.Location
}

func newWindow(start time.Time) window {
	return window{start: start, agg: map[recordKey]*attach.Record{}, byProc: map[uint32][]recordKey{},
		user: map[recordKey][]symbolize.Location{}, gor: map[gorKey]*goroutines.Park{}}
}

func newRecorder(cfg Config, src source, sym *symbolize.Symbolizer) recorder {
	r := recorder{cfg: cfg, src: src, sym: sym, procs: map[uint32]*symbolize.Process{},
		win: newWindow(time.Now()), pys: map[uint32]*pyProc{}, pyLocs: map[string][]symbolize.Location{},
		pyUsed: map[string]bool{}, unwSig: map[uint32]string{}, lastDrops: map[string]uint64{},
		gone: map[uint32]int{}, exited: map[uint32]profiles.Process{}, unread: map[uint32]bool{}, warned: map[string]*warnCount{}}
	if cfg.Loop.on() {
		r.loop = newLoopTracker(cfg.Loop.Stall)
	}
	return r
}

func (r *recorder) drain() error {
	if r.loop != nil {
		// Before the drain: see loop.go on when an iteration is decided.
		if err := r.loop.poll(r.src); err != nil {
			return err
		}
	}
	recs, err := r.src.Drain()
	if err != nil {
		return err
	}
	r.drains++
	r.add(recs)
	if err := r.drainGoroutines(); err != nil {
		return err
	}
	if r.loop != nil {
		r.loop.settle()
	}
	r.forgetExited()
	r.retryPythons()
	// New mappings (dlopen, exec) are picked up while the process lives.
	if r.drains%5 == 0 {
		for _, p := range r.procs {
			if p != nil && !p.Exited() {
				_ = p.Refresh()
			}
		}
	}
	// New code (dlopen, exec) gets its unwind tables within a drain.
	r.refreshUnwind()
	return nil
}

// add merges drained records into the window: by key, Python frames
// resolved while the process lives, loop-tagged records to their iteration.
func (r *recorder) add(recs []attach.Record) {
	w := &r.win
	for i := range recs {
		rec := &recs[i]
		if r.ignoreTIDs[rec.TID] {
			continue
		}
		if _, ok := r.procs[rec.TGID]; !ok {
			r.attachProcess(rec.TGID) // a child forked since the last drain
		}
		k := recordKeyOf(rec, "")
		if locs, key := r.resolvePython(rec); key != "" {
			k.py = key
			if _, ok := r.pyLocs[key]; !ok {
				r.pyLocs[key] = locs
			}
			r.pyUsed[key] = true
		}
		if rec.LoopSeq != 0 && r.loop != nil {
			r.loop.add(rec, k.py)
			// On-CPU samples are for stalls only; preemptions too,
			// unless asked for (Preempted).
			if rec.Kind == attach.OnCPU || (rec.Kind == attach.Preempted && !r.cfg.Preempted) {
				continue
			}
		}
		w.blocked += rec.Blocked
		w.runQueue += rec.RunQueue
		w.intervals += rec.Count
		if have, ok := w.agg[k]; ok {
			have.Count += rec.Count
			have.Blocked += rec.Blocked
			have.RunQueue += rec.RunQueue
			have.Bytes += rec.Bytes
			continue
		}
		// A copy: keeping a pointer into recs would keep the whole
		// drain's slice alive for as long as the window.
		cp := *rec
		w.agg[k] = &cp
		w.byProc[k.tgid] = append(w.byProc[k.tgid], k)
	}
}

// processEvent handles a followed process appearing, exec'ing, first
// blocking or exiting, as the kernel announces it, with the mappings
// watchProcs has for it (see there).
func (r *recorder) processEvent(ev procEvent) {
	have, known := r.procs[ev.TGID]
	if ev.lost {
		// Exec'd and gone before its new code's mappings were read:
		// its frames cannot be told apart from its old image's.
		r.procs[ev.TGID] = nil
		r.unread[ev.TGID] = true
	}
	switch ev.Kind {
	case attach.ProcFork, attach.ProcBlocked:
		if ev.lost {
			return
		}
		if !known || have == nil {
			r.attachProcessWith(ev.TGID, ev.proc)
			if r.procs[ev.TGID] == nil {
				// Not readable (yet): the next look (its records, the
				// children scan, its first block) attaches it.
				delete(r.procs, ev.TGID)
			}
		} else if ev.proc != nil {
			r.procs[ev.TGID] = ev.proc // the one watchProcs refreshes
		}
	case attach.ProcExec:
		if !known || have == nil {
			r.attachProcessWith(ev.TGID, ev.proc)
			return
		}
		// New code: unwind tables, and maybe an interpreter. Its
		// symbols: watchProcs reads them at its first block.
		r.loadUnwind(ev.TGID)
		if py := r.pys[ev.TGID]; py != nil && py.t == nil {
			delete(r.pys, ev.TGID)
		}
		r.attachPython(ev.TGID)
	case attach.ProcExit:
		if _, ok := r.gone[ev.TGID]; !ok {
			r.gone[ev.TGID] = r.drains
		}
	}
}

// forgetExited lets go of exited processes once their last records are
// drained: the kernel writes into one of three rotated maps, and the one
// active at the exit is read by the second drain after it. Their user
// frames in this window are resolved now, while their files are known.
func (r *recorder) forgetExited() {
	for tgid, at := range r.gone {
		if r.drains < at+2 {
			continue
		}
		delete(r.gone, tgid)
		info := profiles.Process{PID: int(tgid), Exited: true}
		if p := r.procs[tgid]; p != nil {
			info.Main = p.Main()
			for _, k := range r.win.byProc[tgid] {
				if rec := r.win.agg[k]; rec != nil && len(rec.UserStack) > 0 {
					r.win.user[k] = p.Locations(callSites(rec.UserStack))
				}
			}
		}
		if _, seen := r.procs[tgid]; seen {
			r.exited[tgid] = info
		}
		delete(r.procs, tgid)
		delete(r.unwSig, tgid)
		if py := r.pys[tgid]; py != nil {
			if py.t != nil && !py.closed {
				py.t.Close()
			}
			delete(r.pys, tgid)
		}
		r.src.ForgetProcess(tgid)
	}
}

// attachProcess takes what symbolization will need from a live process.
// A process that is already gone is remembered as such (nil).
func (r *recorder) attachProcess(tgid uint32) { r.attachProcessWith(tgid, nil) }

// attachProcessWith is attachProcess with the mappings already read (p),
// when watchProcs could.
func (r *recorder) attachProcessWith(tgid uint32, p *symbolize.Process) {
	r.attachPython(tgid) // first: its first stacks may come soon
	r.addGoroutines(tgid)
	r.loadUnwind(tgid)
	if p == nil {
		if q, err := r.sym.Attach(int(tgid)); err == nil {
			p = q
		}
	}
	r.procs[tgid] = p
}

// attachChildren attaches the symbolizer to new children of the processes
// recorded so far (the kernel already counts them: it follows forks).
func (r *recorder) attachChildren() {
	for tgid, p := range r.procs {
		if p == nil || p.Exited() {
			continue
		}
		for _, pid := range children(tgid) {
			if _, ok := r.procs[pid]; !ok {
				r.attachProcess(pid)
				if r.procs[pid] == nil {
					// Listed as a child, yet /proc has no entry for it
					// yet (seen for a few ms after fork): look again at
					// the next scan.
					delete(r.procs, pid)
				}
			}
		}
	}
}

func (r *recorder) status() Status {
	return Status{Elapsed: time.Since(r.attached), Blocked: r.win.blocked, RunQueue: r.win.runQueue, Intervals: r.win.intervals}
}

// snapshot drains, returns the window so far as a profile, and starts the
// next window.
func (r *recorder) snapshot() (*profiles.Profile, error) {
	if err := r.drain(); err != nil {
		return nil, err
	}
	r.win.end = time.Now()
	drops, derr := r.src.Drops()
	threads, terr := r.src.Threads()
	lat, lerr := r.src.Latencies()
	if err := errors.Join(derr, terr, lerr); err != nil {
		return nil, err
	}
	r.loadWaiting() // none while attached: open waits go on into the next window
	p := r.profile(drops, threads, lat, "snapshot")
	r.win = newWindow(r.win.end)
	r.src.NewWindow()
	clear(r.exited)
	clear(r.unread)
	// Resolved Python stacks of the last window stay one more (a loop
	// stall may be reported in the next one), then go.
	for k := range r.pyLocs {
		if !r.pyUsed[k] {
			delete(r.pyLocs, k)
		}
	}
	r.pyUsed = map[string]bool{}
	if r.loop != nil {
		r.loop.cut()
	}
	return p, nil
}

// profile symbolizes the window and builds its profile. drops and lat are
// the kernel's counters since counting started: the window gets its part.
func (r *recorder) profile(drops map[string]uint64, threads map[uint32]attach.Thread, lat []attach.Latency, why string) *profiles.Profile {
	w := &r.win
	p := &profiles.Profile{
		Start:     w.start,
		Duration:  w.end.Sub(w.start),
		Drops:     map[string]uint64{},
		Processes: map[int]profiles.Process{},
	}
	p.Comments = append(p.Comments, r.cfg.Comments...)
	p.Comments = append(p.Comments,
		fmt.Sprintf("stopped: %s; attach took %s", why, r.attached.Sub(r.began).Round(time.Millisecond)))
	if r.cfg.Duration > 0 && w.start.Equal(r.attached) && p.Duration < r.cfg.Duration {
		p.Asked = r.cfg.Duration
		p.Stopped = why
	}
	for reason, total := range drops {
		n := total - r.lastDrops[reason]
		r.lastDrops[reason] = total
		switch {
		case reason == "filtered":
			if n > 0 {
				p.Comments = append(p.Comments, fmt.Sprintf("%d intervals outside --min-block/--max-block", n))
			}
		case n > 0:
			p.Drops[reason] = n
		}
	}

	keys := make([]recordKey, 0, len(w.agg))
	for k := range w.agg {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return w.agg[keys[i]].Blocked > w.agg[keys[j]].Blocked })
	var filtered uint64
	for _, k := range keys {
		s, ok := r.sample(p, w.agg[k], k.py, threads, false)
		if !ok {
			filtered += w.agg[k].Count
			continue
		}
		p.Samples = append(p.Samples, s)
	}

	markThreadPools(p.Samples)
	if r.gor != nil {
		r.goroutineSamples(p, threads)
	}
	r.stillWaiting(p, threads)
	if filtered > 0 {
		p.Comments = append(p.Comments, fmt.Sprintf("%d intervals left out by --target", filtered))
	}
	if u := r.src.UnwindStats(); u.Files+u.FilesFailed+u.FilesNoRoom > 0 {
		p.Comments = append(p.Comments, fmt.Sprintf(
			"unwind tables: %d files, %d rows (%d unsupported); frame pointers only for %d files without tables, %d that did not fit, %d mappings over the limit",
			u.Files, u.Rows, u.UnsupportedRows, u.FilesFailed, u.FilesNoRoom, u.MappingsDropped))
	}
	p.Latency = latencyTable(lat, p.Samples)
	if r.loop != nil {
		// After the idle rules and the latency table: stall samples
		// are neither idle nor single intervals.
		r.loopSamples(p, threads)
	}
	if w.pyUnresolved > 0 {
		// Times are exact; only names are missing (not a loss).
		p.Comments = append(p.Comments, fmt.Sprintf("%d intervals have Python frames left as [python+0x…]: "+
			"their code objects were freed, or the process exited, before they could be read", w.pyUnresolved))
	}

	for tgid, proc := range r.procs {
		info := profiles.Process{PID: int(tgid), Exited: !ProcessExists(int(tgid))}
		if proc != nil {
			info.Main = proc.Main()
		}
		info.Command = cmdline(int(tgid))
		_, info.Comm = threadNames(threads, tgid, tgid)
		p.Processes[int(tgid)] = info
	}
	for tgid, info := range r.exited {
		_, info.Comm = threadNames(threads, tgid, tgid)
		p.Processes[int(tgid)] = info
	}
	return p
}

// sample symbolizes one record into a profile sample: kernel, user and
// Python frames, labels for syscall, target and waker, the idle rules and
// the target's leaf frame. ok is false when --target leaves it out. A
// stall's sample (loop mode) is never idle: the loop waited for it.
func (r *recorder) sample(p *profiles.Profile, rec *attach.Record, py string, threads map[uint32]attach.Thread, stall bool) (s profiles.Sample, ok bool) {
	proc := r.procs[rec.TGID]
	s = profiles.Sample{
		PID: int(rec.TGID), TID: int(rec.TID),
		State: stateLetter(rec.State), Kind: rec.Kind.String(),
		Count: int64(rec.Count), Blocked: rec.Blocked, RunQueue: rec.RunQueue,
	}
	s.Thread, s.Comm = threadNames(threads, rec.TGID, rec.TID)
	var kernel []symbolize.Location
	if len(rec.KernelStack) > 0 {
		kernel = trimTracing(r.sym.Kernel(callSites(rec.KernelStack)))
		s.Stack = append(s.Stack, kernel...)
	}
	sys := syscallLabel(rec.SysNr, kernel, len(rec.KernelStack) > 0)
	if rec.Kind == attach.OnCPU {
		// Sampled where it ran: in a syscall only if the sample says so.
		sys = "none"
		if rec.SysNr >= 0 {
			sys = syscalls.Name(int64(rec.SysNr))
		}
	}
	s.Labels = map[string]string{"syscall": sys}
	target := ""
	if sys != "none" {
		if rec.Fd >= 0 {
			s.Labels["fd"] = strconv.Itoa(int(rec.Fd))
		}
		if rec.Target != nil {
			target = rec.Target.String()
			s.Labels["target"] = target
			addTargetNumbers(&s, rec.Target)
		}
		if rec.Bytes > 0 {
			s.SetNum("bytes", int64(rec.Bytes), "bytes")
		}
	}
	if r.cfg.Target != nil && !r.cfg.Target.MatchString(target) {
		return s, false
	}
	if w := rec.Waker.String(); w != "" {
		s.Labels["waker"] = w
	}
	if rec.Cut != 0 {
		// The window cut this wait: it began before it, or was still
		// going at its end; then how long it had lasted, where known.
		s.Labels["cut"] = rec.Cut.String()
		if w, ok := r.waiting[rec.TID]; ok && rec.Cut&attach.CutAfter != 0 && w.Since > 0 && r.until > w.Since {
			s.SetNum("waited", int64(r.until-w.Since), "nanoseconds")
		}
	}
	var user []symbolize.Location
	if len(rec.UserStack) > 0 {
		if pre, ok := r.win.user[recordKeyOf(rec, py)]; ok && !stall {
			user = pre // resolved before its process was let go
		} else if proc != nil {
			user = proc.Locations(callSites(rec.UserStack))
		} else {
			if r.unread[rec.TGID] {
				p.Drops["user_symbols_exited_unread"] += rec.Count
			} else {
				p.Drops["user_symbols_process_gone"] += rec.Count
			}
			for _, a := range callSites(rec.UserStack) {
				user = append(user, symbolize.Location{Address: a})
			}
		}
	}
	if rec.UnwindPending {
		// Frame pointers through code built without them read
		// garbage: cut at the first caller in no mapping (the marker
		// below says frames are missing).
		for i := 1; i < len(user); i++ {
			if user[i].Mapping == nil && len(user[i].Frames) == 0 {
				user = user[:i]
				break
			}
		}
	}
	if py != "" {
		user = splicePython(user, r.pyLocs[py])
	}
	s.Stack = append(s.Stack, user...)
	// Marked at the root, where frames are missing: frame pointers
	// alone may have lost callers in code built without them; a stack
	// deeper than the unwinder's limit lost its outermost frames.
	switch {
	case rec.UnwindPending && len(user) > 0:
		s.Stack = append(s.Stack, profiles.SyntheticLocation("[walked before unwind tables loaded]"))
	case rec.UnwindTruncated:
		s.Stack = append(s.Stack, profiles.SyntheticLocation("[truncated: deeper than the unwind limit]"))
	}
	if rec.Kind == attach.Blocked && !stall { // nothing in a stall is idle
		if rule := idle.Classify(sys, s.Stack); rule != "" {
			s.Kind = profiles.KindIdle
			s.Labels["idle"] = rule
		}
	}
	if r.cfg.TargetFrames && rec.Target != nil && sys != "none" {
		// Leaf-most, so flame graphs end in what was waited on.
		s.Stack = append([]symbolize.Location{profiles.SyntheticLocation(
			"[" + sys + " " + rec.Target.Short() + "]")}, s.Stack...)
	}
	r.wakerStack(&s, rec)
	return s, true
}

// threadNames returns a thread's and its process's names: from /proc while
// they live (names change at exec and prctl), else as the kernel saw them
// at the thread's first switch-out.
func threadNames(threads map[uint32]attach.Thread, tgid, tid uint32) (thread, comm string) {
	t := threads[tid]
	thread, comm = t.Name, t.Comm
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", tgid, tid)); err == nil {
		thread = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", tgid)); err == nil {
		comm = strings.TrimSpace(string(b))
	}
	if comm == "" {
		// Any thread of the process knows the leader's name.
		for _, o := range threads {
			if o.TGID == tgid && o.Comm != "" {
				comm = o.Comm
				break
			}
		}
	}
	return thread, comm
}

// latencyTable merges the kernel's per-process histograms by syscall and
// target, and reads the percentiles off their log2 buckets; count and
// total come exact from the samples. A row whose samples are all idle is
// marked so.
func latencyTable(hists []attach.Latency, samples []profiles.Sample) []profiles.Latency {
	type rowKey struct{ syscall, target string }
	type exactRow struct {
		count   int64
		total   time.Duration
		nonIdle bool
	}
	exact := map[rowKey]*exactRow{}
	for _, s := range samples {
		if s.Kind == attach.Preempted.String() {
			continue
		}
		k := rowKey{s.Labels["syscall"], s.Labels["target"]}
		e := exact[k]
		if e == nil {
			e = &exactRow{}
			exact[k] = e
		}
		e.count += s.Count
		e.total += s.Blocked + s.RunQueue
		e.nonIdle = e.nonIdle || s.Kind != profiles.KindIdle
	}
	type acc struct {
		buckets [attach.LatencyBuckets]uint64
		max     time.Duration
	}
	by := map[rowKey]*acc{}
	for _, h := range hists {
		k := rowKey{syscall: "none"}
		if h.SysNr >= 0 {
			k.syscall = syscalls.Name(int64(h.SysNr))
			if h.Target != nil {
				k.target = h.Target.String()
			}
		}
		a := by[k]
		if a == nil {
			a = &acc{}
			by[k] = a
		}
		for i, n := range h.Buckets {
			a.buckets[i] += n
		}
		a.max = max(a.max, h.Max)
	}
	var out []profiles.Latency
	for k, a := range by {
		var n int64
		for _, c := range a.buckets {
			n += int64(c)
		}
		e := exact[k]
		if n == 0 || e == nil {
			continue
		}
		out = append(out, profiles.Latency{
			Syscall: k.syscall, Target: k.target, Idle: !e.nonIdle,
			Count: e.count, Total: e.total, Max: a.max,
			P50: percentile(a.buckets[:], uint64(n), 0.50, latencyBucketEdge, a.max),
			P99: percentile(a.buckets[:], uint64(n), 0.99, latencyBucketEdge, a.max)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		if out[i].Syscall != out[j].Syscall {
			return out[i].Syscall < out[j].Syscall
		}
		return out[i].Target < out[j].Target
	})
	return out
}

// addTargetNumbers adds the numbers a target carries as numeric labels, so
// pprof can filter and tag by them (e.g. -tagfocus=sleep=20ms).
func addTargetNumbers(s *profiles.Sample, t *attach.Target) {
	switch t.Kind {
	case "sleep":
		if !t.Unknown {
			s.SetNum("sleep", t.Duration.Nanoseconds(), "nanoseconds")
		}
	case "poll":
		s.SetNum("nfds", int64(t.N), "count")
		if t.Duration >= 0 {
			s.SetNum("timeout", t.Duration.Nanoseconds(), "nanoseconds")
		}
	case "child":
		s.SetNum("child", int64(t.N), "")
	}
}

// wakerStack labels a sample with where its waker was, when waker stacks
// were recorded: the waker's telling user frames, then its kernel frames
// below the wakeup itself ("flushLoop ← main.run" / "hrtimer_wakeup ←
// __hrtimer_run_queues").
func (r *recorder) wakerStack(s *profiles.Sample, rec *attach.Record) {
	if len(rec.WakerUserStack) == 0 && len(rec.WakerKernelStack) == 0 {
		return
	}
	w := profiles.Sample{}
	if len(rec.WakerUserStack) > 0 {
		if proc := r.procs[rec.Waker.TGID]; proc != nil {
			w.Stack = proc.Locations(callSites(rec.WakerUserStack))
		}
	}
	if user := profiles.TellingFrames(w, 4); len(w.Stack) > 0 && len(user) > 0 {
		s.Labels["waker_stack"] = strings.Join(user, " ← ")
	}
	if len(rec.WakerKernelStack) > 0 {
		kern := wakeSite(r.sym.Kernel(callSites(rec.WakerKernelStack)))
		if kern != "" {
			s.Labels["waker_kernel"] = kern
		}
	}
}

// wakeSite names the kernel path that woke a thread: the frames below
// try_to_wake_up and its wrappers, e.g. "futex_wake ← do_futex ← __x64_sys_futex".
func wakeSite(kernel []symbolize.Location) string {
	var names []string
	for _, loc := range kernel {
		for _, f := range loc.Frames { // inlined callee first, as leaf first
			names = append(names, f.Function)
		}
	}
	start := 0
	for i, n := range names {
		if n == "try_to_wake_up" || strings.HasPrefix(n, "wake_up") || strings.HasPrefix(n, "__wake_up") ||
			strings.HasPrefix(n, "bpf_") || strings.HasPrefix(n, "__bpf") || strings.HasPrefix(n, "__traceiter") ||
			strings.HasPrefix(n, "__sched_") || n == "" {
			start = i + 1
		}
		if i > 12 {
			break
		}
	}
	end := min(start+4, len(names))
	if start >= end {
		return ""
	}
	return strings.Join(names[start:end], " ← ")
}

// markThreadPools applies the thread-pool idle rule (internal/idle), which
// needs every sample at once: condition-variable waits on a word that
// several threads of one process park on are pool workers waiting for work.
func markThreadPools(samples []profiles.Sample) {
	waits := make([]idle.CondWait, len(samples))
	for i, s := range samples {
		waits[i] = idle.CondWait{PID: s.PID, TID: s.TID, Syscall: s.Labels["syscall"], Target: s.Labels["target"]}
	}
	for i, pool := range idle.ThreadPool(waits) {
		if pool && samples[i].Kind == attach.Blocked.String() {
			samples[i].Kind = profiles.KindIdle
			samples[i].Labels["idle"] = "thread-pool"
		}
	}
}

// syscallLabel names the syscall a thread blocked in, or "none" (page
// fault, in-kernel wait after an interrupt). orig_ax holds a syscall number
// only after a syscall entry, so with a kernel stack at hand the entry frame
// decides; without one the number is taken at its word.
func syscallLabel(nr int32, kernel []symbolize.Location, haveKernel bool) string {
	inSyscall := nr >= 0
	if haveKernel {
		inSyscall = false
		for _, loc := range kernel {
			for _, f := range loc.Frames {
				if strings.HasPrefix(f.Function, "do_syscall_") || strings.HasPrefix(f.Function, "entry_SYSCALL") {
					inSyscall = true
				}
			}
		}
	}
	if !inSyscall || nr < 0 {
		return "none"
	}
	return syscalls.Name(int64(nr))
}

// trimTracing drops the frames of the tracing machinery (the BPF program,
// its trampoline, bpf_trace_run*) above the scheduler: the stack of a
// blocked thread starts at __schedule.
func trimTracing(kernel []symbolize.Location) []symbolize.Location {
	for i, loc := range kernel {
		if n := len(loc.Frames); n > 0 && loc.Frames[n-1].Function == "__schedule" {
			return kernel[i:]
		}
	}
	return kernel
}

// callSites turns a stack of return addresses (leaf first) into the
// addresses to look up: every frame but the leaf is a return address, and
// the call that made it is the instruction before.
func callSites(stack []uint64) []uint64 {
	out := make([]uint64, len(stack))
	for i, a := range stack {
		if i > 0 && a > 0 {
			a--
		}
		out[i] = a
	}
	return out
}

// stateLetter names a task state as ps(1) does.
func stateLetter(state uint32) string {
	const (
		interruptible   = 0x1
		uninterruptible = 0x2
		stopped         = 0x4
		traced          = 0x8
		parked          = 0x40
		noload          = 0x400
	)
	switch {
	case state == 0:
		return "R"
	case state&(uninterruptible|noload) == uninterruptible|noload:
		return "I" // TASK_IDLE: kernel idle wait, not load
	case state&interruptible != 0:
		return "S"
	case state&uninterruptible != 0:
		return "D"
	case state&stopped != 0:
		return "T"
	case state&traced != 0:
		return "t"
	case state&parked != 0:
		return "P"
	}
	return fmt.Sprintf("0x%x", state)
}
