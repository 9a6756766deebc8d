package engine

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/python"
	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

// fakeSource stands in for an attach.Session: each Drain returns the next
// batch of records; the kernel's counters are whatever the test sets.
type fakeSource struct {
	batches     [][]attach.Record
	drops       map[string]uint64
	threads     map[uint32]attach.Thread
	lat         []attach.Latency
	loopThreads []attach.LoopThread
	loopEvents  []attach.LoopEvent
	waiting     []attach.Waiting
	detached    bool
	forgotten   []uint32
}

func (f *fakeSource) Drain() ([]attach.Record, error) {
	if len(f.batches) == 0 {
		return nil, nil
	}
	b := f.batches[0]
	f.batches = f.batches[1:]
	return b, nil
}
func (f *fakeSource) DetachAt(time.Duration) error               { f.detached = true; return nil }
func (f *fakeSource) CountingSince() time.Duration               { return 0 }
func (f *fakeSource) Close() error                               { return nil }
func (f *fakeSource) Drops() (map[string]uint64, error)          { return f.drops, nil }
func (f *fakeSource) Threads() (map[uint32]attach.Thread, error) { return f.threads, nil }
func (f *fakeSource) Latencies() ([]attach.Latency, error)       { return f.lat, nil }
func (f *fakeSource) AddUnwind(int) error                        { return nil }
func (f *fakeSource) AddTarget(int) error                        { return nil }
func (f *fakeSource) UnwindStats() attach.UnwindStats            { return attach.UnwindStats{} }
func (f *fakeSource) AddPython(uint32, *python.Target) error     { return nil }
func (f *fakeSource) NextPythonStack() (*attach.PyStack, error)  { return nil, attach.ErrNoProcess }
func (f *fakeSource) LoopThreads() ([]attach.LoopThread, error)  { return f.loopThreads, nil }
func (f *fakeSource) OpenWaitsInProgress() error                 { return nil }
func (f *fakeSource) StillWaiting() ([]attach.Waiting, error)    { return f.waiting, nil }
func (f *fakeSource) NewWindow()                                 {}
func (f *fakeSource) ForgetProcess(tgid uint32)                  { f.forgotten = append(f.forgotten, tgid) }
func (f *fakeSource) NextProcEvent() (attach.ProcEvent, error) {
	return attach.ProcEvent{}, attach.ErrNoProcess
}
func (f *fakeSource) LoopEvents() ([]attach.LoopEvent, error) {
	ev := f.loopEvents
	f.loopEvents = nil
	return ev, nil
}

// A process that does not exist: its stacks stay addresses, its names come
// from the kernel's thread table.
const fakePID = 1 << 30

func newTestRecorder(t *testing.T, cfg Config, src *fakeSource) *recorder {
	t.Helper()
	if src.threads == nil {
		src.threads = map[uint32]attach.Thread{fakePID: {TGID: fakePID, Name: "worker", Comm: "app"}}
	}
	sym := symbolize.New(symbolize.Options{})
	t.Cleanup(func() { sym.Close() })
	r := newRecorder(cfg, src, sym)
	start := time.Now()
	r.began, r.attached, r.win.start = start, start, start
	return &r
}

// rec is a blocked interval of fakePID in syscall nr, without stacks.
func rec(nr int32, target *attach.Target, count uint64, blocked time.Duration) attach.Record {
	return attach.Record{TGID: fakePID, TID: fakePID, SysNr: nr, Fd: -1, Target: target, Kind: attach.Blocked,
		State: 1, Count: count, Blocked: blocked, UserStackID: -14, KernelStackID: -14}
}

// end closes the window now and builds its profile, as Stop does.
func (r *recorder) endWindow(t *testing.T, why string) *profiles.Profile {
	t.Helper()
	r.win.end = time.Now()
	src := r.src.(*fakeSource)
	return r.profile(src.drops, src.threads, src.lat, why)
}

func sampleWith(p *profiles.Profile, label, value string) *profiles.Sample {
	for i := range p.Samples {
		if p.Samples[i].Labels[label] == value {
			return &p.Samples[i]
		}
	}
	return nil
}

func TestRecordsBecomeSamples(t *testing.T) {
	sleep := &attach.Target{Kind: "sleep", Duration: 20 * time.Millisecond}
	src := &fakeSource{batches: [][]attach.Record{
		{rec(35, sleep, 3, 60*time.Millisecond), rec(0, nil, 1, 5*time.Millisecond)},
		{rec(35, sleep, 2, 40*time.Millisecond)}, // same bucket, next drain
	}}
	src.batches[0][0].Waker = attach.Waker{Kind: attach.WakerIRQ}
	src.batches[1][0].Waker = attach.Waker{Kind: attach.WakerIRQ}
	r := newTestRecorder(t, Config{TargetFrames: true}, src)
	for range 2 {
		if err := r.drain(); err != nil {
			t.Fatal(err)
		}
	}
	p := r.endWindow(t, "test")
	if len(p.Samples) != 2 {
		t.Fatalf("%d samples, want 2: %+v", len(p.Samples), p.Samples)
	}
	s := p.Samples[0] // largest blocked time first
	if s.Count != 5 || s.Blocked != 100*time.Millisecond || s.Kind != "blocking" || s.State != "S" {
		t.Errorf("sleep sample: count %d, blocked %v, kind %q, state %q", s.Count, s.Blocked, s.Kind, s.State)
	}
	if s.Labels["syscall"] != "nanosleep" || s.Labels["target"] != "sleep 20ms" || s.Labels["waker"] != "[interrupt]" {
		t.Errorf("sleep sample labels: %v", s.Labels)
	}
	if s.Thread != "worker" || s.Comm != "app" {
		t.Errorf("names from the kernel's thread table: thread %q comm %q", s.Thread, s.Comm)
	}
	if len(s.Stack) == 0 || s.Stack[0].Frames[0].Function != "[nanosleep sleep 20ms]" {
		t.Errorf("no target leaf frame: %+v", s.Stack)
	}
	if n, ok := s.NumLabels["sleep"]; !ok || n != int64(20*time.Millisecond) {
		t.Errorf("sleep numeric label: %v", s.NumLabels)
	}
	if got := sampleWith(p, "syscall", "read"); got == nil || got.Count != 1 {
		t.Errorf("read sample: %+v", got)
	}
	if st := r.status(); st.Intervals != 6 || st.Blocked != 105*time.Millisecond {
		t.Errorf("status %+v", st)
	}
}

func TestIdleRulesAndTargetFilter(t *testing.T) {
	poll := &attach.Target{Kind: "poll", N: 64, Duration: -1}
	file := &attach.Target{Kind: "file", Path: "/var/lib/app/wal.log"}
	src := &fakeSource{batches: [][]attach.Record{{
		rec(232, poll, 10, time.Second),                                             // epoll_wait: waiting for work
		rec(74, file, 4, 8*time.Millisecond),                                        // fsync: blocking
		rec(0, &attach.Target{Kind: "pipe", Path: "pipe:[1]"}, 2, time.Millisecond), // read pipe
	}}}
	r := newTestRecorder(t, Config{Target: regexp.MustCompile(`^(poll|file) `)}, src)
	if err := r.drain(); err != nil {
		t.Fatal(err)
	}
	p := r.endWindow(t, "test")
	idle := sampleWith(p, "syscall", "epoll_wait")
	if idle == nil || idle.Kind != profiles.KindIdle || idle.Labels["idle"] != "event-wait" {
		t.Errorf("epoll_wait should be idle (event-wait): %+v", idle)
	}
	if s := sampleWith(p, "syscall", "fsync"); s == nil || s.Kind != "blocking" {
		t.Errorf("fsync should be blocking: %+v", s)
	}
	if s := sampleWith(p, "syscall", "read"); s != nil {
		t.Errorf("read of a pipe should be left out by the target filter: %+v", s)
	}
	if !strings.Contains(strings.Join(p.Comments, "\n"), "2 intervals left out by --target") {
		t.Errorf("comments do not count the filtered intervals: %q", p.Comments)
	}
}

func TestLoopStallAttribution(t *testing.T) {
	const tid = fakePID
	stall := attach.LoopEvent{Kind: attach.LoopStall, TGID: fakePID, TID: tid, Seq: 7,
		Start: time.Second, End: time.Second + 300*time.Millisecond, OffCPU: 100 * time.Millisecond}
	blocked := rec(0, &attach.Target{Kind: "pipe", Path: "pipe:[9]"}, 1, 100*time.Millisecond)
	blocked.LoopSeq = 7
	cpuA := attach.Record{TGID: fakePID, TID: tid, Kind: attach.OnCPU, SysNr: -1, Fd: -1, Count: 3,
		UserStack: []uint64{0x1000}, UserStackID: 1, KernelStackID: -14, LoopSeq: 7}
	cpuB := cpuA
	cpuB.UserStack, cpuB.UserStackID, cpuB.Count = []uint64{0x2000}, 2, 1
	fast := rec(0, nil, 1, time.Millisecond)
	fast.LoopSeq = 6 // a fast iteration: dropped from the stalls
	src := &fakeSource{
		batches:     [][]attach.Record{{blocked, cpuA, cpuB, fast}},
		loopThreads: []attach.LoopThread{{TGID: fakePID, TID: tid, SysNr: 232, DoneSeq: 7, Seq: 8, Iterations: 100}},
		loopEvents:  []attach.LoopEvent{stall},
	}
	r := newTestRecorder(t, Config{Loop: LoopConfig{Auto: true, Stall: 100 * time.Millisecond}}, src)
	if err := r.drain(); err != nil {
		t.Fatal(err)
	}
	p := r.endWindow(t, "test")
	var onCPU, off time.Duration
	var stalls int64
	for _, s := range p.Samples {
		if s.Loop == nil {
			continue
		}
		onCPU += s.Loop.OnCPU
		off += s.Loop.Blocked + s.Loop.RunQueue
		stalls += s.Loop.Stalls
		if s.Loop.OnCPU == 150*time.Millisecond && s.Loop.Stalls != 1 {
			t.Errorf("the largest part (150ms on CPU) should carry the stall: %+v", s.Loop)
		}
	}
	if onCPU != 200*time.Millisecond || off != 100*time.Millisecond || stalls != 1 {
		t.Errorf("stall split: on CPU %v (want 200ms, 3:1 by samples), off CPU %v (want 100ms), stalls %d", onCPU, off, stalls)
	}
	if len(p.Loops) != 1 || p.Loops[0].Stalls != 1 || p.Loops[0].Worst != 300*time.Millisecond {
		t.Errorf("loops: %+v", p.Loops)
	}
	// Outside stalls, on-CPU samples are not samples of their own.
	for _, s := range p.Samples {
		if s.Loop == nil && s.Kind == attach.OnCPU.String() {
			t.Errorf("on-CPU sample outside a stall: %+v", s)
		}
	}
}

func TestSnapshotWindows(t *testing.T) {
	var lat attach.Latency
	lat.SysNr = 0
	lat.Buckets[20] = 5
	lat.Max = 2 * time.Millisecond
	src := &fakeSource{
		batches: [][]attach.Record{{rec(0, nil, 5, 10*time.Millisecond)}, {rec(0, nil, 2, 3*time.Millisecond)}},
		drops:   map[string]uint64{"stack_collision": 4},
		lat:     []attach.Latency{lat},
	}
	r := newTestRecorder(t, Config{}, src)
	first, err := r.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Samples) != 1 || first.Samples[0].Count != 5 || first.Drops["stack_collision"] != 4 ||
		len(first.Latency) != 1 || first.Latency[0].Count != 5 {
		t.Errorf("first window: %+v", first)
	}
	src.drops["stack_collision"] = 5
	src.lat[0].Buckets[20] = 7
	if err := r.drain(); err != nil {
		t.Fatal(err)
	}
	second := r.endWindow(t, "test")
	if len(second.Samples) != 1 || second.Samples[0].Count != 2 || second.Drops["stack_collision"] != 1 {
		t.Errorf("second window should hold only what came after the first: %+v", second)
	}
	if len(second.Latency) != 1 || second.Latency[0].Count != 2 {
		t.Errorf("second window's latency rows: %+v", second.Latency)
	}
	if !second.Start.Equal(first.Start.Add(first.Duration)) {
		t.Errorf("windows do not follow each other: %v+%v, then %v", first.Start, first.Duration, second.Start)
	}
}

func TestPercentile(t *testing.T) {
	hist := make([]uint64, attach.LatencyBuckets)
	hist[3] = 99 // [8ns, 16ns)
	hist[10] = 1
	if got := percentile(hist, 100, 0.50, latencyBucketEdge, time.Hour); got != 16 {
		t.Errorf("p50 = %v, want the bucket's upper edge 16ns", got)
	}
	if got := percentile(hist, 100, 0.99, latencyBucketEdge, time.Hour); got != 16 {
		t.Errorf("p99 = %v, want 16ns: the 99th of 100 values is still in bucket 3", got)
	}
	if got := percentile(hist, 100, 1, latencyBucketEdge, 1500); got != 1500 {
		t.Errorf("max = %v, want capped at the largest seen", got)
	}
	if got := percentile(nil, 0, 0.5, loopBucketEdge, time.Second); got != 0 {
		t.Errorf("no values: %v", got)
	}
	loop := make([]uint64, attach.LoopHistBuckets)
	loop[40] = 1
	_, hi := attach.LoopBucketBounds(40)
	if got := percentile(loop, 1, 0.5, loopBucketEdge, time.Hour); got != hi {
		t.Errorf("loop p50 = %v, want %v", got, hi)
	}
}
