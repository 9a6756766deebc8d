package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// Options select what a Session records.
type Options struct {
	PIDs []int // target processes (tgids)
	TIDs []int // if set, only these threads of the targets
	// FollowChildren adds processes forked by targets as they appear.
	FollowChildren bool
	// AwaitExec counts PIDs only from their next exec on (a command
	// launched behind an exec gate: before the exec it is the gate).
	AwaitExec bool
	// Off-CPU intervals whose blocked time falls outside [MinBlock, MaxBlock]
	// are counted as filtered, not recorded. Zero MaxBlock means no maximum.
	MinBlock, MaxBlock time.Duration
	// Preempted also records involuntary switch-outs (run-queue time only).
	Preempted bool
	// NoUserStacks / NoKernelStacks skip a stack walk (cheaper, less detail).
	NoUserStacks, NoKernelStacks bool
	// ExactKernelStacks walks the kernel stack at every switch-out instead
	// of reusing the last one when the thread blocks again at the same
	// place (same user stack, syscall, first argument and state).
	ExactKernelStacks bool
	// NoRunQueue skips the wakeup hook: all off-CPU time counts as blocked,
	// and wakers are unknown. It halves the cost every non-target switch
	// pays (one program, not two).
	NoRunQueue bool
	// NoTargets leaves out what syscalls waited on (fd targets, paths,
	// futex words, timeouts): cheaper switch-outs.
	NoTargets bool
	// NoWakers leaves out who woke each interval; WakerStacks adds the
	// waker's kernel stack (and its user stack when it is a thread of the
	// same process).
	NoWakers, WakerStacks bool
	// Syscalls, if set, records only intervals in these syscall numbers;
	// NoSyscall then also keeps those in no syscall (faults, preemption).
	Syscalls  []int
	NoSyscall bool
	// Unwind walks user stacks with .eh_frame tables in the kernel (see
	// AddUnwind), falling back to frame pointers where a mapping has none.
	Unwind bool
	// Python loads the CPython frame walker (see AddPython); off, targets
	// pay nothing for it.
	Python bool
	// Loop turns on event-loop mode (nil: off; its programs stay detached).
	Loop *LoopOptions
	// LateTargets says targets may be added after Open (AddTarget): PIDs
	// may then be empty, and even a single PID is looked up in the targets
	// map rather than compared with a load-time constant.
	LateTargets bool
	// NoWaitsInProgress leaves out waits that began before counting
	// started and those still going when it stops. By default a thread
	// already off the CPU is measured from the start (see
	// OpenWaitsInProgress), and an interval still open at the end is
	// closed there (both marked, see Cut).
	NoWaitsInProgress bool
}

// Kind says what an off-CPU interval was.
type Kind uint32

const (
	Blocked   Kind = Kind(blockprofIntervalKindKIND_BLOCKED)
	Preempted Kind = Kind(blockprofIntervalKindKIND_PREEMPTED)
)

func (k Kind) String() string {
	switch k {
	case Preempted:
		return "preempted"
	case OnCPU:
		return "on-cpu"
	}
	return "blocking"
}

// Record is one aggregated bucket drained from the kernel.
type Record struct {
	TGID, TID uint32
	// Stacks hold raw addresses, leaf first; equal IDs mean equal stacks
	// for the whole session. A negative ID is -errno: not captured (e.g.
	// -EEXIST on a stack-map collision, -EFAULT for no user stack).
	UserStack, KernelStack     []uint64
	UserStackID, KernelStackID int32
	State                      uint32 // prev_state bits at switch-out
	// SysNr is orig_ax at switch-out: the syscall number if the thread was
	// in a syscall (confirm with the kernel stack: exceptions store their
	// error code there), negative for interrupts.
	SysNr int32
	// Fd is the fd argument of an fd syscall (-1 otherwise). Target is what
	// the syscall waited on when the thread blocked (nil if nothing known);
	// one pointer per distinct target for the session.
	Fd     int32
	Target *Target
	// Waker is who ended the interval, with its stacks when asked for.
	Waker                            Waker
	WakerUserStack, WakerKernelStack []uint64
	Kind                             Kind
	Count                            uint64
	Blocked, RunQueue                time.Duration
	Bytes                            uint64 // asked for by read/write-like calls, summed
	// UserStackHash identifies a user stack unwound with tables (then
	// UserStackID is negative); 0 for frame-pointer stacks.
	UserStackHash uint64
	// UnwindPending: the stack was walked with frame pointers because its
	// process's unwind tables were not loaded yet. UnwindTruncated: the
	// stack was deeper than the unwinder's frame limit (outer frames cut).
	UnwindPending, UnwindTruncated bool
	// Python holds the thread's Python frames (nil if none); PyStackID
	// is their content hash, equal for equal frames.
	Python    *PyStack
	PyStackID uint64
	// LoopSeq is the loop iteration the interval or sample fell in (loop
	// mode, loop threads only), 0 for none.
	LoopSeq uint32
	// Cut: the interval began before the window, or was still going at
	// its end (then it is one that was, see Session.StillWaiting).
	Cut Cut
}

// Thread names one thread seen off-CPU.
type Thread struct {
	TGID       uint32
	Name, Comm string // thread name, process name
}

// Session is a set of attached BPF programs counting off-CPU time of targets.
type Session struct {
	objs  blockprofObjects
	links []link.Link

	mu     sync.Mutex
	active uint32
	// drainRaces counts drains that went ahead with a writer still in
	// flight (reported as a drop).
	drainRaces uint64
	// pendingNotNeeded counts walks the kernel counted as before tables
	// that needed none (see UnwindTables.NeededTable).
	pendingNotNeeded uint64
	// Stack ids are stable for the run: cache them. Bounded by the stack
	// maps' sizes (ids are their buckets).
	ustack  map[int32][]uint64
	kstack  map[int32][]uint64
	wkstack map[int32][]uint64
	// Copied out of LRU maps before eviction. targets holds one window's
	// (see NewWindow); pystacks and unwstacks are released per process
	// (ForgetProcess).
	targets     map[targetKey]*Target
	python      bool
	pystacks    map[uint64]*PyStack
	pyByProc    map[uint32][]uint64 // pystacks keys per process
	unwind      *UnwindTables       // nil unless Options.Unwind
	unwstacks   map[uint64]unwound
	unwByProc   map[uint32][]uint64 // unwstacks keys per process (the first that used each)
	pyReader    *ringbuf.Reader     // see NextPythonStack
	procReader  *ringbuf.Reader     // see NextProcEvent
	closed      bool
	follow      bool
	lateTargets bool // AddTarget may add targets (Options.LateTargets)
	// Latency histograms drained so far and not yet read (Latencies).
	lat map[latKey]*Latency

	// The window (CLOCK_MONOTONIC) and waits in progress (inflight.go).
	countingSince, countingUntil time.Duration
	waitsInProgress              bool

	// Loop mode (loop.go).
	loopReader *ringbuf.Reader
	loopHz     int
	sampled    map[uint32]int // loop thread -> its sampling perf event fd
}

// targetKey is a target's identity in the kernel's keys.
type targetKey struct {
	kind blockprofTargetKind
	a, b uint64
}

// programPrefix is how every blockprof program is named, so leftovers can be
// found (see LoadedPrograms).
const programPrefix = "bprof_"

// Open loads the BPF objects, configured for opts, and attaches them. On
// error nothing stays loaded or attached.
func Open(opts Options) (*Session, error) {
	if len(opts.PIDs) == 0 && !opts.LateTargets {
		return nil, errors.New("no target process")
	}
	if err := CheckBTF(); err != nil {
		return nil, err
	}
	if err := CheckKernel(opts); err != nil {
		return nil, err
	}
	// Needed only before 5.11 (memcg accounting made it moot); never fatal.
	_ = rlimit.RemoveMemlock()

	spec, err := configuredSpec(opts)
	if err != nil {
		return nil, err
	}
	s := &Session{ustack: map[int32][]uint64{}, kstack: map[int32][]uint64{}, wkstack: map[int32][]uint64{},
		targets: map[targetKey]*Target{}, python: opts.Python, pystacks: map[uint64]*PyStack{},
		pyByProc: map[uint32][]uint64{}, unwstacks: map[uint64]unwound{}, unwByProc: map[uint32][]uint64{},
		follow: opts.FollowChildren || opts.LateTargets, lat: map[latKey]*Latency{}}
	if err := s.open(spec, opts); err != nil {
		// Close copes with whatever part was built; the caller gets
		// only the error.
		s.Close()
		return nil, err
	}
	return s, nil
}

// configuredSpec is the BPF collection with opts written into its load-time
// constants (the verifier prunes what they turn off).
func configuredSpec(opts Options) (*ebpf.CollectionSpec, error) {
	spec, err := loadBlockprof()
	if err != nil {
		return nil, fmt.Errorf("load BPF spec: %w", err)
	}
	set := func(name string, v any) error {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object lacks variable %s", name)
		}
		return vs.Set(v)
	}
	single := uint32(0)
	if len(opts.PIDs) == 1 && !opts.FollowChildren && !opts.AwaitExec && !opts.LateTargets {
		single = uint32(opts.PIDs[0])
	}
	var mask [8]uint64
	for _, nr := range opts.Syscalls {
		if nr < 0 || nr >= 512 {
			return nil, fmt.Errorf("syscall number %d out of range", nr)
		}
		mask[nr/64] |= 1 << (nr % 64)
	}
	vars := map[string]any{
		blockprofVarCfgSingleTgid:     single,
		blockprofVarCfgFilterTids:     len(opts.TIDs) > 0,
		blockprofVarCfgFollowChildren: opts.FollowChildren,
		blockprofVarCfgReleaseExited:  opts.FollowChildren || opts.LateTargets,
		blockprofVarCfgPreempted:      opts.Preempted,
		blockprofVarCfgUserStacks:     !opts.NoUserStacks,
		blockprofVarCfgKernelStacks:   !opts.NoKernelStacks,
		blockprofVarCfgReuseKstack:    !opts.ExactKernelStacks,
		blockprofVarCfgMinBlockNs:     uint64(opts.MinBlock),
		blockprofVarCfgMaxBlockNs:     uint64(opts.MaxBlock),
		blockprofVarCfgTargets:        !opts.NoTargets,
		blockprofVarCfgUnwind:         opts.Unwind && !opts.NoUserStacks,
		blockprofVarCfgWakers:         !opts.NoWakers && !opts.NoRunQueue,
		blockprofVarCfgWakerStacks:    opts.WakerStacks && !opts.NoWakers && !opts.NoRunQueue,
		blockprofVarCfgFilterSyscalls: len(opts.Syscalls) > 0,
		blockprofVarCfgAllowNosyscall: opts.NoSyscall,
		blockprofVarCfgSyscallMask:    mask,
		blockprofVarCfgPython:         opts.Python,
		blockprofVarCfgLoop:           opts.Loop != nil,
	}
	if o := opts.Loop; o != nil {
		if o.Stall <= 0 {
			return nil, errors.New("loop mode needs a stall threshold above zero")
		}
		vars[blockprofVarCfgLoopAuto] = o.Auto
		vars[blockprofVarCfgLoopExplicit] = len(o.Threads) > 0
		vars[blockprofVarCfgLoopStallNs] = uint64(o.Stall)
	}
	for name, v := range vars {
		if err := set(name, v); err != nil {
			return nil, fmt.Errorf("configure %s: %w", name, err)
		}
	}
	return spec, nil
}

// failStep, when set (by tests), is asked before each step of open and
// makes that step fail with the error it returns: the fault-injection test
// fails every step in turn and checks that nothing stays behind.
var failStep func(step string) error

// step names the next step of open (see failStep).
func step(name string) error {
	if failStep != nil {
		return failStep(name)
	}
	return nil
}

// open loads spec into s and attaches it. On error s holds what was built
// so far, for Close to release.
func (s *Session) open(spec *ebpf.CollectionSpec, opts Options) error {
	if err := step("load"); err != nil {
		return fmt.Errorf("load BPF programs: %w", err)
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("load BPF programs: %v", verr)
		}
		return classify("load BPF programs", err)
	}
	if opts.Unwind && !opts.NoUserStacks {
		s.unwind = NewUnwindTables(s.objs.UnwRows, s.objs.UnwProcs, s.objs.UnwMappings)
	}

	one := uint8(1)
	state := one // TARGET_LIVE
	if opts.AwaitExec {
		state = 2 // TARGET_AWAIT_EXEC
	}
	for _, pid := range opts.PIDs {
		err := step("add target")
		if err == nil {
			err = s.objs.Targets.Put(uint32(pid), state)
		}
		if err != nil {
			return fmt.Errorf("add target %d: %w", pid, err)
		}
	}
	for _, tid := range opts.TIDs {
		err := step("add thread")
		if err == nil {
			err = s.objs.TargetTids.Put(uint32(tid), one)
		}
		if err != nil {
			return fmt.Errorf("add thread %d: %w", tid, err)
		}
	}

	// Wakeup first, then fork, then switch: once switch is live every
	// interval it opens can be closed correctly.
	progs := []*ebpf.Program{s.objs.BprofWakeup, s.objs.BprofFork, s.objs.BprofExec, s.objs.BprofSwitch}
	if opts.NoRunQueue {
		progs = progs[1:]
	}
	if opts.FollowChildren || opts.LateTargets {
		// Releases an exited target's entries (see bprof_exit).
		progs = append(progs, s.objs.BprofExit)
	}
	for _, p := range progs {
		if err := s.attachTracing(p); err != nil {
			return err
		}
	}
	s.countingSince = Monotonic()
	s.waitsInProgress = !opts.NoWaitsInProgress
	s.lateTargets = opts.LateTargets
	if opts.Loop != nil {
		if err := s.attachLoop(opts.Loop, opts.PIDs); err != nil {
			return err
		}
	}
	return nil
}

// CountingSince is when counting started (CLOCK_MONOTONIC): the window's
// start, from which waits already in progress are measured.
func (s *Session) CountingSince() time.Duration { return s.countingSince }

// AddTarget starts counting process pid (a tgid) from now on, as if it
// had been among Options.PIDs: its threads' switch-outs are recorded from
// their next one (waits already in progress are not opened for it). It
// needs Options.LateTargets (otherwise a single target is compared with a
// load-time constant and the new one would never count). Adding a target
// twice is harmless.
func (s *Session) AddTarget(pid int) error {
	if !s.lateTargets {
		return errors.New("add target: session not opened for late targets")
	}
	if pid <= 0 {
		return fmt.Errorf("add target %d: invalid process id", pid)
	}
	s.mu.Lock() // not while Close unloads the maps
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("add target %d: %w", pid, os.ErrClosed)
	}
	if err := s.objs.Targets.Put(uint32(pid), uint8(1)); err != nil { // TARGET_LIVE
		return classify(fmt.Sprintf("add target %d", pid), err)
	}
	return nil
}

// CountingUntil is when counting stopped (CLOCK_MONOTONIC), zero while
// attached.
func (s *Session) CountingUntil() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countingUntil
}

// attachTracing attaches a tp_btf program and keeps its link.
func (s *Session) attachTracing(p *ebpf.Program) error {
	name := "program"
	if info, err := p.Info(); err == nil {
		name = info.Name
	}
	err := step("attach " + name)
	if err == nil {
		var l link.Link
		if l, err = link.AttachTracing(link.TracingOptions{Program: p}); err == nil {
			s.links = append(s.links, l)
			return nil
		}
	}
	return classify("attach "+name, err)
}

// Drain returns what the kernel aggregated into maps nobody writes any
// more, and empties them. While attached, the kernel's writes rotate over
// three maps: Drain moves them on by one and reads the map that stopped
// being written at the previous Drain, a whole interval ago, so no add can
// still be in flight into it. Once detached, nothing runs: Drain reads
// everything.
func (s *Session) Drain() ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	maps := []*ebpf.Map{s.objs.Agg0, s.objs.Agg1, s.objs.Agg2}
	lats := []*ebpf.Map{s.objs.Latency0, s.objs.Latency1, s.objs.Latency2}
	var idle, idleLat []*ebpf.Map
	if s.links == nil {
		idle, idleLat = maps, lats
	} else {
		s.active = (s.active + 1) % 3
		if err := s.objs.ActiveAgg.Set(s.active); err != nil {
			return nil, fmt.Errorf("rotate aggregation maps: %w", err)
		}
		drained := (s.active + 1) % 3
		idle, idleLat = []*ebpf.Map{maps[drained]}, []*ebpf.Map{lats[drained]}
		if err := s.waitQuiet(drained); err != nil {
			return nil, err
		}
	}
	for _, m := range idleLat {
		if err := s.drainLatency(m); err != nil {
			return nil, err
		}
	}

	var recs []Record
	for _, m := range idle {
		keys, vals, err := drainMap(m)
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			v := vals[i]
			r := Record{
				TGID: k.Tgid, TID: k.Tid,
				State: k.State, Kind: Kind(k.Kind), SysNr: k.Sysnr, Fd: k.Fd,
				Target:   s.target(blockprofTargetKind(k.Tkind), k.Ta, k.Tb),
				Count:    v.Count,
				Blocked:  time.Duration(v.BlockedNs),
				RunQueue: time.Duration(v.RunqueueNs),
				Bytes:    v.Bytes,
				Waker: Waker{
					Kind: WakerKind(k.WakerKind), TGID: k.WakerTgid, TID: k.WakerTid,
					Comm: cString(k.WakerComm[:]), UserStackID: k.WakerUstack, KernelStackID: k.WakerKstack,
				},
			}
			r.UserStack, r.UserStackID = s.stack(s.objs.Ustacks, s.ustack, k.Ustack)
			if k.Uhash != 0 {
				u := s.unwoundStack(k.Uhash, k.Tgid)
				r.UserStack, r.UnwindPending, r.UnwindTruncated = u.pcs, u.pending, u.truncated
				if u.pending && s.unwind != nil {
					// Only a walk that needed a table it did not
					// have is incomplete (a Go stack never is).
					if needed, known := s.unwind.NeededTable(k.Tgid, u.pcs); known && !needed {
						r.UnwindPending = false
						s.pendingNotNeeded += v.Count
					}
				}
				r.UserStackHash = k.Uhash
			}
			r.KernelStack, r.KernelStackID = s.stack(s.objs.Kstacks, s.kstack, k.Kstack)
			r.WakerUserStack, r.Waker.UserStackID = s.stack(s.objs.Ustacks, s.ustack, k.WakerUstack)
			r.WakerKernelStack, r.Waker.KernelStackID = s.stack(s.objs.Wkstacks, s.wkstack, k.WakerKstack)
			r.Python, r.PyStackID = s.pyStack(k.Pystack), k.Pystack
			r.LoopSeq = k.LoopSeq
			r.Cut = Cut(k.Cut)
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// Detach stops counting now: see DetachAt.
func (s *Session) Detach() error { return s.DetachAt(Monotonic()) }

// DetachAt stops counting at end (CLOCK_MONOTONIC, now or just before):
// intervals are cut there and none opens after it, however long
// unlinking takes. Once this returns no program runs any more (the kernel
// waits for running ones), and the waits still in progress were closed at
// end, so a following Drain reads exact final sums. Maps stay readable
// until Close.
func (s *Session) DetachAt(end time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	attached := s.links != nil
	var errs []error
	if attached && !s.closed {
		end = max(end, s.countingSince)
		errs = append(errs, s.objs.CountingUntil.Set(uint64(end)))
	}
	// Sampling events first: they hold the sampling program attached.
	errs = append(errs, s.stopSampling())
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	if attached && !s.closed {
		// Nothing runs any more: the intervals still open are the waits
		// in progress at the window's end.
		s.countingUntil = end
		if s.waitsInProgress {
			errs = append(errs, s.closeWaitsInProgress(end))
		}
	}
	return errors.Join(errs...)
}

// waitQuiet waits until no BPF program is still adding into aggregation
// map idx (one that read the old active index just before the rotation).
// Adds take well under a microsecond; a vCPU stall can stretch one, so
// this waits up to a second and then counts the race rather than hang.
func (s *Session) waitQuiet(idx uint32) error {
	deadline := time.Now().Add(time.Second)
	for {
		var inflight [3]uint64
		if err := s.objs.AggInflight.Get(&inflight); err != nil {
			return fmt.Errorf("read in-flight counters: %w", err)
		}
		if inflight[idx] == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			s.drainRaces++
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// drainMap reads and deletes every entry of an aggregation map nobody
// writes to any more.
func drainMap(m *ebpf.Map) ([]blockprofAggKey, []blockprofAggVal, error) {
	var keys []blockprofAggKey
	var vals []blockprofAggVal
	const chunk = 4096
	kbuf := make([]blockprofAggKey, chunk)
	vbuf := make([]blockprofAggVal, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, kbuf, vbuf, nil)
		keys = append(keys, kbuf[:n]...)
		vals = append(vals, vbuf[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("drain aggregation map: %w", err)
		}
	}
	// Batch ops unavailable: iterate, then delete what was read.
	var k blockprofAggKey
	var v blockprofAggVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("iterate aggregation map: %w", err)
	}
	for i := range keys {
		_ = m.Delete(keys[i])
	}
	return keys, vals, nil
}

func (s *Session) stack(m *ebpf.Map, cache map[int32][]uint64, id int32) ([]uint64, int32) {
	const enoent = -2
	if id < 0 {
		return nil, id
	}
	if st, ok := cache[id]; ok {
		return st, id
	}
	if m == s.objs.Kstacks && id&inflightKstackBit != 0 {
		st, err := s.inflightStack(id)
		if err != nil || st == nil {
			return nil, enoent
		}
		cache[id] = st
		return st, id
	}
	raw := make([]uint64, m.ValueSize()/8)
	if err := m.Lookup(uint32(id), raw); err != nil {
		return nil, enoent // vanished (should not happen: never deleted)
	}
	n := 0
	for n < len(raw) && raw[n] != 0 {
		n++
	}
	st := raw[:n:n]
	cache[id] = st
	return st, id
}

// target returns what a key's (kind, a, b) waited on: fd and path targets
// from the kernel's LRU maps (or the copy taken at an earlier drain),
// others decoded from the key itself. nil when nothing is known.
func (s *Session) target(kind blockprofTargetKind, a, b uint64) *Target {
	if kind == blockprofTargetKindTK_NONE {
		return nil
	}
	k := targetKey{kind, a, b}
	if t, ok := s.targets[k]; ok {
		return t
	}
	var t *Target
	switch kind {
	case blockprofTargetKindTK_FD:
		var d blockprofFdTarget
		if err := s.objs.FdTargets.Lookup(blockprofFdKey{File: a, Ino: b}, &d); err != nil {
			return nil
		}
		t = newFdTarget(&d)
	case blockprofTargetKindTK_PATH:
		var p blockprofPathArg
		if err := s.objs.PathArgs.Lookup(a, &p); err != nil {
			return nil
		}
		t = &Target{Kind: "path", Path: cString(p.Path[:])}
	default:
		t = newArgTarget(kind, a, b)
	}
	s.targets[k] = t
	return t
}

// unwoundStack returns a table-unwound user stack, from the kernel's LRU
// map or the copy taken at an earlier drain (kept until process tgid,
// the first to use it, is forgotten).
func (s *Session) unwoundStack(h uint64, tgid uint32) unwound {
	if st, ok := s.unwstacks[h]; ok {
		return st
	}
	var v blockprofUnwStack
	if err := s.objs.UnwStacks.Lookup(h, &v); err != nil {
		return unwound{}
	}
	n := min(int(v.N), len(v.Pcs))
	st := unwound{pcs: append([]uint64(nil), v.Pcs[:n]...), pending: v.Pending != 0,
		truncated: v.Status == uint32(blockprofUnwStatusUNW_TRUNCATED)}
	s.unwstacks[h] = st
	s.unwByProc[tgid] = append(s.unwByProc[tgid], h)
	return st
}

// unwound is a copied-out table-unwound stack.
type unwound struct {
	pcs                []uint64
	pending, truncated bool
}

// AddUnwind loads the unwind tables of process pid's executable mappings
// (again after it mapped new code: dlopen, exec). Until it returns, the
// process's stacks are walked with frame pointers. A no-op without
// Options.Unwind.
func (s *Session) AddUnwind(pid int) error {
	if s.unwind == nil {
		return nil
	}
	return s.unwind.AddProcess(pid)
}

// UnwindStats reports what loading tables found (zero without Unwind).
func (s *Session) UnwindStats() UnwindStats {
	if s.unwind == nil {
		return UnwindStats{}
	}
	return s.unwind.Stats()
}

// Drops returns the kernel's loss counters by reason, summed over CPUs.
func (s *Session) Drops() (map[string]uint64, error) {
	out := map[string]uint64{}
	for r := blockprofDropReason(0); r < blockprofDropReasonDROP_MAX; r++ {
		var per []uint64
		if err := s.objs.Drops.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("read drop counter %d: %w", r, err)
		}
		var sum uint64
		for _, c := range per {
			sum += c
		}
		out[dropName(r)] = sum
	}
	s.mu.Lock()
	out["drain_race"] = s.drainRaces
	pending := dropName(blockprofDropReasonDROP_UNWIND_PENDING)
	out[pending] -= min(out[pending], s.pendingNotNeeded)
	s.mu.Unlock()
	// The kernel skips a program that would nest on a CPU where a BPF
	// program already runs, and counts it: an interval lost that way must
	// show too.
	for name, p := range map[string]*ebpf.Program{
		"switch": s.objs.BprofSwitch, "wakeup": s.objs.BprofWakeup,
		"fork": s.objs.BprofFork, "exec": s.objs.BprofExec, "exit": s.objs.BprofExit,
		"loop_sample": s.objs.BprofLoopSample,
	} {
		if st, err := p.Stats(); err == nil && st.RecursionMisses > 0 {
			out["recursion_"+name] = st.RecursionMisses
		}
	}
	return out, nil
}

// dropName is the user-facing name of a drop reason.
func dropName(r blockprofDropReason) string {
	switch r {
	case blockprofDropReasonDROP_USTACK_COLLISION:
		return "user_stack_collision"
	case blockprofDropReasonDROP_USTACK_ERROR:
		return "user_stack_error"
	case blockprofDropReasonDROP_KSTACK_COLLISION:
		return "kernel_stack_collision"
	case blockprofDropReasonDROP_KSTACK_ERROR:
		return "kernel_stack_error"
	case blockprofDropReasonDROP_AGG_FULL:
		return "aggregation_full"
	case blockprofDropReasonDROP_AGG_FULL_NS:
		return "aggregation_full_ns"
	case blockprofDropReasonDROP_STORAGE:
		return "task_storage"
	case blockprofDropReasonDROP_THREADS_FULL:
		return "thread_names_full"
	case blockprofDropReasonDROP_TARGETS_FULL:
		return "targets_full"
	case blockprofDropReasonDROP_FILTERED:
		return "filtered"
	case blockprofDropReasonDROP_LATENCY_FULL:
		return "latency_histograms_full"
	case blockprofDropReasonDROP_FD_UNREADABLE:
		return "fd_target_unreadable"
	case blockprofDropReasonDROP_ARG_UNREADABLE:
		return "syscall_arg_unreadable"
	case blockprofDropReasonDROP_UNCLOSED:
		return "interval_unclosed"
	case blockprofDropReasonDROP_SWITCHIN_MISSED:
		return "switch_in_missed"
	case blockprofDropReasonDROP_UNWIND_PARTIAL:
		return "user_stack_unwind_partial"
	case blockprofDropReasonDROP_UNWIND_TRUNCATED:
		return "user_stack_truncated"
	case blockprofDropReasonDROP_UNWIND_PENDING:
		return "user_stack_before_tables"
	case blockprofDropReasonDROP_PY_READ:
		return "python_frames_unreadable"
	case blockprofDropReasonDROP_PY_TRUNCATED:
		return "python_stack_truncated"
	case blockprofDropReasonDROP_LOOP_EVENT:
		return "loop_events_lost"
	case blockprofDropReasonDROP_LOOP_STATS_FULL:
		return "loop_threads_full"
	case blockprofDropReasonDROP_PROC_EVENT:
		return "process_events_lost"
	}
	return fmt.Sprintf("reason_%d", r)
}

// LatencyBuckets is the number of log2 buckets of a Latency histogram:
// bucket i counts intervals of [2^i, 2^(i+1)) nanoseconds.
const LatencyBuckets = len(blockprofLatVal{}.Buckets)

// Latency is the distribution of single off-CPU intervals (blocked plus
// run-queue) of one process in one syscall (SysNr -1: in none) on one
// target (nil: none known).
type Latency struct {
	TGID    uint32
	SysNr   int32
	Target  *Target
	Buckets [LatencyBuckets]uint64
	Max     time.Duration
}

// latKey identifies one latency histogram.
type latKey struct {
	tgid   uint32
	sysnr  int32
	target *Target
}

// drainLatency reads and empties a latency map nobody writes any more,
// adding its histograms to those not yet read.
func (s *Session) drainLatency(m *ebpf.Map) error {
	var keys []blockprofLatKey
	var vals []blockprofLatVal
	var k blockprofLatKey
	var v blockprofLatVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read latency histograms: %w", err)
	}
	for i, k := range keys {
		_ = m.Delete(k)
		v := &vals[i]
		lk := latKey{k.Tgid, k.Sysnr, s.target(blockprofTargetKind(k.Tkind), k.Ta, k.Tb)}
		l := s.lat[lk]
		if l == nil {
			l = &Latency{TGID: k.Tgid, SysNr: k.Sysnr, Target: lk.target}
			s.lat[lk] = l
		}
		for b, n := range v.Buckets {
			l.Buckets[b] += n
		}
		l.Max = max(l.Max, time.Duration(v.MaxNs))
	}
	return nil
}

// Latencies returns the per-syscall histograms drained since the last
// call: the intervals of the records Drain returned meanwhile (exact once
// detached and drained).
func (s *Session) Latencies() ([]Latency, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Latency, 0, len(s.lat))
	for _, l := range s.lat {
		out = append(out, *l)
	}
	clear(s.lat)
	return out, nil
}

// NewWindow starts a new window of target identities: Target pointers
// stay equal for equal targets within a window (callers key by them), and
// those of the last window are let go. Call it when no record of the last
// window will be merged with new ones.
func (s *Session) NewWindow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets = map[targetKey]*Target{}
}

// ForgetProcess lets go of what the session holds for an exited process:
// its Python offsets and unwind mappings in the kernel (released at its
// exit already when children are followed; an entry added after that
// exit would stay), and the stacks it alone used. Call it once its last
// records were drained.
func (s *Session) ForgetProcess(tgid uint32) {
	if s.python {
		_ = s.objs.PyTargets.Delete(tgid)
	}
	if s.unwind != nil {
		_ = s.unwind.RemoveProcess(int(tgid))
	}
	if s.follow {
		_ = s.objs.Targets.Delete(tgid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.pyByProc[tgid] {
		delete(s.pystacks, k)
	}
	delete(s.pyByProc, tgid)
	for _, h := range s.unwByProc[tgid] {
		delete(s.unwstacks, h)
	}
	delete(s.unwByProc, tgid)
}

// ProcEventKind says what happened to a followed process.
type ProcEventKind uint32

const (
	ProcFork = ProcEventKind(blockprofProcEventKindPROC_FORK) // a new child, now a target
	ProcExec = ProcEventKind(blockprofProcEventKindPROC_EXEC) // a target exec'ed: new code
	ProcExit = ProcEventKind(blockprofProcEventKindPROC_EXIT) // a target's last thread exited
	// ProcBlocked: a target's main thread blocks for the first time since
	// its fork or exec; it is alive and its mappings hold the code it ran.
	ProcBlocked = ProcEventKind(blockprofProcEventKindPROC_BLOCKED)
)

// ProcEvent is a followed process appearing, exec'ing, first blocking or
// exiting.
type ProcEvent struct {
	Kind   ProcEventKind
	TGID   uint32
	Parent uint32 // ProcFork: the parent process
}

// NextProcEvent waits for the next process event (Options.FollowChildren
// only), so a new child's mappings can be read while it lives. It returns
// an error once the session is closed.
func (s *Session) NextProcEvent() (ProcEvent, error) {
	s.mu.Lock()
	rd := s.procReader
	if rd == nil && s.follow && !s.closed {
		var err error
		if rd, err = ringbuf.NewReader(s.objs.ProcEvents); err != nil {
			s.mu.Unlock()
			return ProcEvent{}, fmt.Errorf("read process events: %w", err)
		}
		s.procReader = rd
	}
	s.mu.Unlock()
	if rd == nil {
		return ProcEvent{}, ringbuf.ErrClosed
	}
	for {
		rec, err := rd.Read()
		if err != nil {
			return ProcEvent{}, err
		}
		if len(rec.RawSample) < 12 {
			continue
		}
		return ProcEvent{Kind: ProcEventKind(binary.LittleEndian.Uint32(rec.RawSample)),
			TGID:   binary.LittleEndian.Uint32(rec.RawSample[4:]),
			Parent: binary.LittleEndian.Uint32(rec.RawSample[8:])}, nil
	}
}

// Threads returns the names of every thread seen off-CPU so far.
func (s *Session) Threads() (map[uint32]Thread, error) {
	out := map[uint32]Thread{}
	var tid uint32
	var info blockprofThreadInfo
	it := s.objs.Threads.Iterate()
	for it.Next(&tid, &info) {
		out[tid] = Thread{TGID: info.Tgid, Name: cString(info.Comm[:]), Comm: cString(info.LeaderComm[:])}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read thread names: %w", err)
	}
	return out, nil
}

func cString(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

// Close detaches and unloads everything. Safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	var rerr error
	if s.pyReader != nil {
		rerr = s.pyReader.Close()
		s.pyReader = nil
	}
	if s.loopReader != nil {
		rerr = errors.Join(rerr, s.loopReader.Close())
		s.loopReader = nil
	}
	if s.procReader != nil {
		rerr = errors.Join(rerr, s.procReader.Close())
		s.procReader = nil
	}
	s.closed = true
	s.mu.Unlock()
	return errors.Join(s.Detach(), rerr, s.objs.Close())
}

// LoadedPrograms lists BPF programs of blockprof's that are loaded on the
// machine (by any process); after a clean exit it must be empty. The kernel
// frees programs after an RCU grace period, so callers checking for
// leftovers should retry for a moment.
func LoadedPrograms() ([]string, error) {
	var names []string
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return names, nil
		}
		if err != nil {
			return nil, classify("list BPF programs", err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		p.Close()
		if err == nil && len(info.Name) >= len(programPrefix) && info.Name[:len(programPrefix)] == programPrefix {
			names = append(names, fmt.Sprintf("%s (id %d)", info.Name, id))
		}
	}
}
