package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// LoopOptions turn on event-loop mode: the iterations of loop threads (from
// the return of their loop wait, epoll_wait or poll, to its next call) are
// timed in the kernel, and what happened inside each one longer than Stall
// is kept: off-CPU intervals as usual, on-CPU time from samples.
type LoopOptions struct {
	// Stall is the iteration length that makes a stall (asyncio's
	// slow_callback_duration is 100 ms).
	Stall time.Duration
	// Threads are loop threads named by the user: measured from their
	// first wait. Auto also finds loop threads by behaviour: threads that
	// keep calling the same wait.
	Threads []int
	Auto    bool
	// SampleHz is how many on-CPU samples a loop thread takes per second
	// of its CPU time (a task-clock perf event per loop thread); 0: none.
	SampleHz int
}

// OnCPU is the Kind of loop-mode on-CPU samples: Count samples standing for
// Blocked of CPU time (their sampling periods).
const OnCPU Kind = Kind(blockprofIntervalKindKIND_ONCPU)

// LoopEventKind says what a LoopEvent reports.
type LoopEventKind uint32

const (
	LoopFound LoopEventKind = LoopEventKind(blockprofLoopEventKindLOOP_EV_FOUND)
	LoopStall LoopEventKind = LoopEventKind(blockprofLoopEventKindLOOP_EV_STALL)
)

// LoopEvent is a new loop thread, or one stall: iteration Seq of thread
// TID ran from Start to End (CLOCK_MONOTONIC), OffCPU of it off-CPU.
type LoopEvent struct {
	Kind       LoopEventKind
	TGID, TID  uint32
	Seq        uint32
	Wait       uint64 // identity of the loop wait (see LoopThread.Wait)
	SysNr      int32  // LoopFound: the loop wait's syscall
	Start, End time.Duration
	OffCPU     time.Duration
}

// LoopHistBuckets is the size of LoopThread.Hist (see LoopBucketBounds).
const LoopHistBuckets = len(blockprofLoopStats{}.Hist)

// LoopThread is what the kernel measured of one loop thread so far.
type LoopThread struct {
	TGID, TID uint32
	// Wait identifies the loop wait: the syscall class in the top byte (1
	// epoll, 2 poll, 3 select), then the epoll fd or the user address of
	// the poll set. SysNr is its syscall.
	Wait  uint64
	SysNr int32
	// InIteration: the thread was between two waits when read; the
	// iteration Seq began at IterStart (CLOCK_MONOTONIC).
	InIteration bool
	Seq         uint32
	IterStart   time.Duration
	// DoneSeq: every iteration up to this one is over, and its stall (if
	// it was one) already in the event ring.
	DoneSeq    uint32
	Iterations uint64
	Stalls     uint64
	Total, Max time.Duration
	Hist       [LoopHistBuckets]uint64
}

// LoopBucketBounds is the range [lo, hi) of iteration lengths counted in
// histogram bucket b: 8 buckets per power of two.
func LoopBucketBounds(b int) (lo, hi time.Duration) {
	const sub = 3
	if b < 1<<sub {
		return time.Duration(b), time.Duration(b + 1)
	}
	msb, frac := b>>sub, b&(1<<sub-1)
	lo = time.Duration(uint64(1<<sub+frac) << (msb - sub))
	hi = time.Duration(uint64(1<<sub+frac+1) << (msb - sub))
	return lo, hi
}

// attachLoop attaches the wait hooks and starts sampling the named threads.
func (s *Session) attachLoop(o *LoopOptions, pids []int) error {
	for _, tid := range o.Threads {
		err := step("add loop thread")
		if err == nil {
			err = s.objs.LoopTids.Put(uint32(tid), uint8(1))
		}
		if err != nil {
			return fmt.Errorf("add loop thread %d: %w", tid, err)
		}
	}
	// Threads waiting right now: their wait's return starts an iteration.
	named := map[uint32]bool{}
	for _, tid := range o.Threads {
		named[uint32(tid)] = true
	}
	for _, pid := range pids {
		for tid, id := range blockedInWait(pid) {
			if o.Auto || named[tid] {
				_ = s.objs.LoopHints.Put(tid, id) // a hint only: a full map loses nothing
			}
		}
	}
	// The raw syscall tracepoints through BTF, exit first: an exit without
	// its entry does nothing, so this order never starts an iteration
	// half-seen. They need no tracefs (see bpf/blockprof.bpf.c).
	for _, p := range []*ebpf.Program{s.objs.BprofLoopExit, s.objs.BprofLoopEnter} {
		if err := s.attachTracing(p); err != nil {
			return err
		}
	}
	err := step("read loop events")
	var rd *ringbuf.Reader
	if err == nil {
		rd, err = ringbuf.NewReader(s.objs.LoopRing)
	}
	if err != nil {
		return fmt.Errorf("read loop events: %w", err)
	}
	s.loopReader = rd
	s.loopHz = o.SampleHz
	s.sampled = map[uint32]int{}
	for _, tid := range o.Threads {
		if err := s.sampleThread(uint32(tid)); err != nil {
			return err
		}
	}
	return nil
}

// waitClass is the loop-wait class of a syscall (1 epoll, 2 poll, 3
// select; 0: not a wait), as in the BPF program.
func waitClass(nr int) uint64 {
	switch nr {
	case 232, 281, 441:
		return 1
	case 7, 271:
		return 2
	case 23, 270:
		return 3
	}
	return 0
}

// blockedInWait finds the threads of pid blocked in a wait syscall now,
// with the identity of that wait, from /proc/PID/task/TID/syscall ("232
// 0x5 0x7ffd... ...": number, then arguments).
func blockedInWait(pid int) map[uint32]uint64 {
	out := map[uint32]uint64{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		tid, err := strconv.ParseUint(task.Name(), 10, 32)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 3 {
			continue // "running", or "-1 sp pc" outside a syscall
		}
		nr, err := strconv.Atoi(f[0])
		cls := waitClass(nr)
		if err != nil || cls == 0 {
			continue
		}
		argField := f[1]
		if cls == 3 {
			argField = f[2]
		}
		arg, err := strconv.ParseUint(strings.TrimPrefix(argField, "0x"), 16, 64)
		if err != nil {
			continue
		}
		out[uint32(tid)] = cls<<56 | arg&(1<<56-1)
	}
	return out
}

// sampleThread opens a task-clock sampling event on one thread with the
// sampling program attached. Its period is CPU time, so a thread is
// sampled only while it runs, and each sample stands for one period.
func (s *Session) sampleThread(tid uint32) error {
	if s.loopHz <= 0 || s.sampled[tid] != 0 {
		return nil
	}
	if err := step("sample loop thread"); err != nil {
		return fmt.Errorf("sample loop thread %d: %w", tid, err)
	}
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_TASK_CLOCK,
		Sample: uint64(time.Second) / uint64(s.loopHz),
		Bits:   unix.PerfBitDisabled,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, int(tid), -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if errors.Is(err, unix.ESRCH) {
		return nil // the thread is gone already
	}
	if err != nil {
		return fmt.Errorf("sample loop thread %d: perf_event_open: %w", tid, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, s.objs.BprofLoopSample.FD()); err != nil {
		unix.Close(fd)
		return fmt.Errorf("sample loop thread %d: attach program: %w", tid, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		unix.Close(fd)
		return fmt.Errorf("sample loop thread %d: enable: %w", tid, err)
	}
	s.sampled[tid] = fd
	return nil
}

// LoopEvents returns the loop events the kernel reported since the last
// call, without waiting, and starts sampling the loop threads found.
func (s *Session) LoopEvents() ([]LoopEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loopReader == nil {
		return nil, nil
	}
	var out []LoopEvent
	var errs []error
	s.loopReader.SetDeadline(time.Now())
	var rec ringbuf.Record
	for {
		err := s.loopReader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("read loop events: %w", err)
		}
		var e blockprofLoopEvent
		if len(rec.RawSample) < int(unsafe.Sizeof(e)) {
			continue
		}
		if _, err := binary.Decode(rec.RawSample, binary.LittleEndian, &e); err != nil {
			continue
		}
		ev := LoopEvent{Kind: LoopEventKind(e.Kind), TGID: e.Tgid, TID: e.Tid, Seq: e.Seq, Wait: e.Wait,
			SysNr: e.Sysnr, Start: time.Duration(e.Start), End: time.Duration(e.End), OffCPU: time.Duration(e.OffNs)}
		if ev.Kind == LoopFound && s.links != nil {
			if err := s.sampleThread(ev.TID); err != nil {
				errs = append(errs, err)
			}
		}
		out = append(out, ev)
	}
	return out, errors.Join(errs...)
}

// LoopThreads reads what the kernel measured of each loop thread.
func (s *Session) LoopThreads() ([]LoopThread, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []LoopThread
	var tid uint32
	var v blockprofLoopStats
	it := s.objs.LoopThreads.Iterate()
	for it.Next(&tid, &v) {
		out = append(out, LoopThread{TGID: v.Tgid, TID: v.Tid, Wait: v.Wait, SysNr: v.Sysnr,
			InIteration: v.InIter != 0, Seq: v.Seq, IterStart: time.Duration(v.IterStart), DoneSeq: v.DoneSeq,
			Iterations: v.Iterations, Stalls: v.Stalls, Total: time.Duration(v.TotalNs), Max: time.Duration(v.MaxNs),
			Hist: v.Hist})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read loop threads: %w", err)
	}
	return out, nil
}

// SampledLoopThreads is how many loop threads have an on-CPU sampling event.
func (s *Session) SampledLoopThreads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sampled)
}

// stopSampling closes the sampling events (with s.mu held).
func (s *Session) stopSampling() error {
	var errs []error
	for tid, fd := range s.sampled {
		if fd > 0 {
			errs = append(errs, unix.Close(fd))
		}
		delete(s.sampled, tid)
	}
	return errors.Join(errs...)
}

// Monotonic is the kernel's CLOCK_MONOTONIC now, the clock of loop times.
func Monotonic() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}
