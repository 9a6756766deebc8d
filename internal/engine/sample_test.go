package engine

import (
	"testing"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

func TestStateLetter(t *testing.T) {
	for state, want := range map[uint32]string{0: "R", 1: "S", 2: "D", 0x402: "I", 0x102: "D", 4: "T", 8: "t", 0x40: "P"} {
		if got := stateLetter(state); got != want {
			t.Errorf("stateLetter(%#x) = %q, want %q", state, got, want)
		}
	}
}

func TestCallSites(t *testing.T) {
	got := callSites([]uint64{100, 200, 300})
	if got[0] != 100 || got[1] != 199 || got[2] != 299 {
		t.Errorf("callSites = %v", got)
	}
}

func TestTrimTracing(t *testing.T) {
	loc := func(name string) symbolize.Location {
		return symbolize.Location{Frames: []symbolize.Frame{{Function: name}}}
	}
	got := trimTracing([]symbolize.Location{{Address: 1}, loc("bpf_trace_run4"), loc("__schedule"), loc("schedule")})
	if len(got) != 2 || got[0].Frames[0].Function != "__schedule" {
		t.Errorf("trimTracing kept %v", got)
	}
	if got := trimTracing([]symbolize.Location{loc("a"), loc("b")}); len(got) != 2 {
		t.Errorf("without __schedule nothing may be dropped, got %v", got)
	}
}

func TestSyscallLabel(t *testing.T) {
	entry := []symbolize.Location{{Frames: []symbolize.Frame{{Function: "do_nanosleep"}}}, {Frames: []symbolize.Frame{{Function: "do_syscall_64"}}}}
	fault := []symbolize.Location{{Frames: []symbolize.Frame{{Function: "folio_wait_bit"}}}, {Frames: []symbolize.Frame{{Function: "exc_page_fault"}}}}
	for _, tc := range []struct {
		nr     int32
		kernel []symbolize.Location
		have   bool
		want   string
	}{
		{35, entry, true, "nanosleep"},
		{4, fault, true, "none"}, // a page fault's error code, not stat(2)
		{-1, entry, true, "none"},
		{0, nil, false, "read"},
		{-1, nil, false, "none"},
	} {
		if got := syscallLabel(tc.nr, tc.kernel, tc.have); got != tc.want {
			t.Errorf("syscallLabel(%d, %v) = %q, want %q", tc.nr, tc.have, got, tc.want)
		}
	}
}

func TestLatencyTable(t *testing.T) {
	var h attach.Latency
	h.SysNr = 0        // read
	h.Buckets[20] = 98 // [1.05 ms, 2.1 ms)
	h.Buckets[24] = 2  // [16.8 ms, 33.6 ms)
	h.Max = 20 * time.Millisecond
	other := h
	other.TGID = 2
	samples := []profiles.Sample{
		{Kind: "blocking", Count: 100, Blocked: 150 * time.Millisecond, RunQueue: 10 * time.Millisecond, Labels: map[string]string{"syscall": "read"}},
		{Kind: "blocking", Count: 100, Blocked: 160 * time.Millisecond, Labels: map[string]string{"syscall": "read"}},
		{Kind: "preempted", Count: 5, RunQueue: time.Second, Labels: map[string]string{"syscall": "none"}},
	}
	got := latencyTable([]attach.Latency{h, other}, samples)
	if len(got) != 1 {
		t.Fatalf("latencyTable = %+v, want one row (read)", got)
	}
	l := got[0]
	if l.Syscall != "read" || l.Count != 200 || l.Total != 320*time.Millisecond {
		t.Errorf("exact count/total wrong: %+v", l)
	}
	if l.P50 != 1<<21 || l.P99 != 20*time.Millisecond || l.Max != 20*time.Millisecond {
		t.Errorf("percentiles: p50 %v (want bucket edge 2.1ms), p99 %v (want capped at max 20ms), max %v", l.P50, l.P99, l.Max)
	}
}
