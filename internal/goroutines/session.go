// Package goroutines measures how long the goroutines of Go targets stay
// parked (channel, mutex, select, sleep, netpoller waits), with uprobes on
// the Go runtime: a park's stack, wait reason and goroutine id at
// runtime.gopark, when it was made runnable at runtime.ready or
// runtime.injectglist, and when it ran again at runtime.execute. Its BPF
// object (bpf/goroutines.bpf.c) is apart from the thread profiler's.
package goroutines

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"blockprof/internal/attach"
)

// Options select what a Session records.
type Options struct {
	// WakerStacks walks the waking goroutine's stack at every wakeup
	// (its function becomes the park's waker).
	WakerStacks bool
	// NoReady leaves runtime.ready and runtime.injectglist unhooked: one
	// uprobe less per park, but the whole park counts as blocked (no
	// run-queue split). For cost comparisons.
	NoReady bool
}

// Park is one aggregated bucket of goroutine parks.
type Park struct {
	TGID uint32
	GoID uint64
	// Reason is the wait reason as goroutine dumps spell it ("chan
	// receive", "sleep", "IO wait", ...); Code its value.
	Reason string
	Code   uint32
	// Stack holds return addresses, innermost first: the first is in the
	// function that called runtime.gopark. StackKey is 0 when the stack
	// could not be read; equal keys mean equal stacks for the session.
	Stack     []uint64
	StackKey  uint64
	Truncated bool
	// Target is what an IO wait waited on (nil otherwise, or unknown).
	Target *attach.Target
	// WakerStack is the waking goroutine's stack (Options.WakerStacks).
	WakerStack    []uint64
	WakerStackKey uint64
	Count         uint64
	// Blocked is park to runnable, RunQueue runnable to running; Unsplit
	// counts parks whose wakeup was not seen (all their time is Blocked).
	Blocked, RunQueue time.Duration
	Unsplit           uint64
}

// Session is the goroutine programs, loaded once, attached per process.
type Session struct {
	opts  Options
	objs  goroutinesObjects
	mu    sync.Mutex
	links map[uint32][]link.Link
	bins  map[uint32]*Binary

	active  uint32
	stacks  map[uint64]goStack
	targets map[goroutinesGoFdKey]*attach.Target
	closed  bool
}

type goStack struct {
	pcs       []uint64
	truncated bool
}

// Open loads the goroutine programs; nothing is attached until Add.
func Open(opts Options) (*Session, error) {
	spec, err := loadGoroutines()
	if err != nil {
		return nil, fmt.Errorf("load goroutine BPF spec: %w", err)
	}
	if err := spec.Variables["cfg_waker_stacks"].Set(opts.WakerStacks && !opts.NoReady); err != nil {
		return nil, fmt.Errorf("configure cfg_waker_stacks: %w", err)
	}
	s := &Session{opts: opts, links: map[uint32][]link.Link{}, bins: map[uint32]*Binary{},
		stacks: map[uint64]goStack{}, targets: map[goroutinesGoFdKey]*attach.Target{}}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load goroutine BPF programs: %v", verr)
		}
		return nil, fmt.Errorf("load goroutine BPF programs: %w", err)
	}
	return s, nil
}

// Add starts measuring the goroutines of process pid, whose executable
// (exe, e.g. /proc/PID/exe) b describes.
func (s *Session) Add(pid int, exe string, b *Binary) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("goroutine session closed")
	}
	tgid := uint32(pid)
	if _, ok := s.links[tgid]; ok {
		return nil
	}
	o := b.Offsets
	v := goroutinesGoProc{G_goid: o.GoID, G_schedlink: o.SchedLink, PdFd: o.PollFd, PdRg: o.PollRg,
		PdWg: o.PollWg, PdSelf: o.PollSelf, Iowait: b.IOWait}
	if err := s.objs.GoProcs.Put(tgid, &v); err != nil {
		return fmt.Errorf("add Go process %d: %w", pid, err)
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		_ = s.objs.GoProcs.Delete(tgid)
		return fmt.Errorf("open %s: %w", exe, err)
	}
	hooks := []struct {
		fn   string
		prog *ebpf.Program
	}{{fnRun, s.objs.BprofGoRun}, {fnPark, s.objs.BprofGoPark}}
	if !s.opts.NoReady {
		// Before park: a park seen must find its wakeup hooked.
		hooks = append([]struct {
			fn   string
			prog *ebpf.Program
		}{{fnReady, s.objs.BprofGoReady}, {fnInject, s.objs.BprofGoInject}}, hooks...)
	}
	var ls []link.Link
	for _, h := range hooks {
		off, ok := b.Funcs[h.fn]
		if !ok {
			continue // injectglist or ready missing: parks stay unsplit
		}
		l, err := ex.Uprobe(h.fn, h.prog, &link.UprobeOptions{Address: off, PID: pid})
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			_ = s.objs.GoProcs.Delete(tgid)
			return fmt.Errorf("uprobe %s in %d: %w", h.fn, pid, err)
		}
		ls = append(ls, l)
	}
	s.links[tgid] = ls
	s.bins[tgid] = b
	return nil
}

// Processes returns the processes whose goroutines are measured.
func (s *Session) Processes() map[uint32]*Binary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint32]*Binary, len(s.bins))
	for k, v := range s.bins {
		out[k] = v
	}
	return out
}

// Detach removes every uprobe; parks still in progress stay unmeasured.
func (s *Session) Detach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for tgid, ls := range s.links {
		for _, l := range ls {
			errs = append(errs, l.Close())
		}
		s.links[tgid] = nil
	}
	return errors.Join(errs...)
}

// Drain returns what the kernel aggregated since the last Drain. While
// attached, the programs write one of two maps: Drain switches them to
// the other, waits until no program is still adding to the old one, and
// reads and empties it. After Detach it reads both.
func (s *Session) Drain() ([]Park, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps := []*ebpf.Map{s.objs.GoAgg0, s.objs.GoAgg1}
	idle := maps
	if s.attached() {
		old := s.active
		s.active ^= 1
		if err := s.objs.GoActive.Set(s.active); err != nil {
			return nil, fmt.Errorf("switch goroutine aggregation: %w", err)
		}
		if err := s.waitQuiet(old); err != nil {
			return nil, err
		}
		idle = maps[old : old+1]
	}
	var out []Park
	for _, m := range idle {
		var k goroutinesGoAggKey
		var v goroutinesGoAggVal
		var keys []goroutinesGoAggKey
		it := m.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, k)
			out = append(out, s.park(&k, &v))
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read goroutine parks: %w", err)
		}
		for i := range keys {
			_ = m.Delete(&keys[i])
		}
	}
	return out, nil
}

func (s *Session) attached() bool {
	for _, ls := range s.links {
		if len(ls) > 0 {
			return true
		}
	}
	return false
}

// waitQuiet waits for the programs still adding into map idx (they read
// the old index just before the switch); they take microseconds.
func (s *Session) waitQuiet(idx uint32) error {
	deadline := time.Now().Add(time.Second)
	for {
		var inflight [2]uint64
		if err := s.objs.GoInflight.Get(&inflight); err != nil {
			return fmt.Errorf("read goroutine in-flight counters: %w", err)
		}
		if inflight[idx] == 0 || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func (s *Session) park(k *goroutinesGoAggKey, v *goroutinesGoAggVal) Park {
	p := Park{TGID: k.Tgid, GoID: k.Goid, Code: k.Reason, StackKey: k.Stack, WakerStackKey: k.WakerStack,
		Count: v.Count, Blocked: time.Duration(v.BlockedNs), RunQueue: time.Duration(v.RunqueueNs), Unsplit: v.Unsplit}
	if b := s.bins[k.Tgid]; b != nil && int(k.Reason) < len(b.Reasons) {
		p.Reason = b.Reasons[k.Reason]
	} else {
		p.Reason = fmt.Sprintf("wait reason %d", k.Reason)
	}
	st := s.stack(k.Stack)
	p.Stack, p.Truncated = st.pcs, st.truncated
	p.WakerStack = s.stack(k.WakerStack).pcs
	if k.File != 0 {
		p.Target = s.target(goroutinesGoFdKey{File: k.File, Ino: k.Ino})
	}
	return p
}

func (s *Session) stack(key uint64) goStack {
	if key == 0 {
		return goStack{}
	}
	if st, ok := s.stacks[key]; ok {
		return st
	}
	var raw goroutinesGoStack
	if err := s.objs.GoStacks.Lookup(key, &raw); err != nil {
		return goStack{}
	}
	n := min(int(raw.N), len(raw.Pcs))
	st := goStack{pcs: append([]uint64(nil), raw.Pcs[:n]...), truncated: raw.Truncated != 0}
	s.stacks[key] = st
	return st
}

// target describes a poll descriptor's fd, from the kernel's LRU map or
// the copy taken at an earlier drain.
func (s *Session) target(k goroutinesGoFdKey) *attach.Target {
	if t, ok := s.targets[k]; ok {
		return t
	}
	var d goroutinesGoFd
	if err := s.objs.GoFds.Lookup(&k, &d); err != nil {
		return nil
	}
	t := &attach.Target{Ino: d.Ino}
	const sIFMT, sIFSOCK, sIFIFO, sIFREG, sIFCHR = 0o170000, 0o140000, 0o010000, 0o100000, 0o020000
	switch d.Mode & sIFMT {
	case sIFSOCK:
		t.Kind = sockKind(d.Family, d.Sotype, d.Protocol)
		switch d.Family {
		case 2:
			t.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d.Laddr[:4])), d.Lport)
			t.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d.Raddr[:4])), d.Rport)
		case 10:
			t.Local = netip.AddrPortFrom(netip.AddrFrom16(d.Laddr).Unmap(), d.Lport)
			t.Remote = netip.AddrPortFrom(netip.AddrFrom16(d.Raddr).Unmap(), d.Rport)
		}
	case sIFIFO:
		t.Kind, t.Path = "pipe", fmt.Sprintf("pipe:[%d]", d.Ino)
	case sIFREG:
		t.Kind, t.Path = "file", fmt.Sprintf("inode %d", d.Ino)
	case sIFCHR:
		t.Kind, t.Path = "chr", fmt.Sprintf("inode %d", d.Ino)
	default:
		t.Kind, t.Path = "anon", fmt.Sprintf("inode %d", d.Ino)
	}
	s.targets[k] = t
	return t
}

func sockKind(family, sotype, protocol uint16) string {
	var six string
	switch family {
	case 1:
		return "unix"
	case 2:
	case 10:
		six = "6"
	default:
		return fmt.Sprintf("socket(family %d)", family)
	}
	switch {
	case protocol == 6 || (protocol == 0 && sotype == 1):
		return "tcp" + six
	case protocol == 17 || (protocol == 0 && sotype == 2):
		return "udp" + six
	}
	return "raw" + six
}

// Drops returns the programs' loss counters by name, summed over CPUs.
func (s *Session) Drops() (map[string]uint64, error) {
	names := map[goroutinesGoDrop]string{
		goroutinesGoDropGO_DROP_PARKED_FULL: "goroutine_parks_full",
		goroutinesGoDropGO_DROP_STACKS_FULL: "goroutine_stacks_full",
		goroutinesGoDropGO_DROP_STACK_READ:  "goroutine_stack_unreadable",
		goroutinesGoDropGO_DROP_AGG_FULL:    "goroutine_aggregation_full",
		goroutinesGoDropGO_DROP_POLLDESC:    "goroutine_polldesc_unchecked",
		goroutinesGoDropGO_DROP_FD:          "goroutine_fd_unresolved",
	}
	out := map[string]uint64{}
	for r, name := range names {
		var per []uint64
		if err := s.objs.GoDrops.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("read goroutine drop counter %s: %w", name, err)
		}
		var sum uint64
		for _, c := range per {
			sum += c
		}
		out[name] = sum
	}
	return out, nil
}

// Close detaches and unloads everything; safe more than once.
func (s *Session) Close() error {
	err := s.Detach()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return err
	}
	s.closed = true
	return errors.Join(err, s.objs.Close())
}
