package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"blockprof/internal/attach"
	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

func TestParseRecordFlags(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)
	c, err := parseRecordFlags([]string{"-p", "42,43", "-p", "44", "-t", "50", "-d", "3s", "--min-block", "1ms", "--format", "folded"}, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.pids) != 3 || c.pids[2] != 44 || c.tids[0] != 50 || c.duration != 3*time.Second || c.minBlock != time.Millisecond {
		t.Errorf("parsed %+v", c)
	}
	if c.output != "blockprof-42-20261126-101500.folded" {
		t.Errorf("default output %q", c.output)
	}
	if !c.userStacks() || !c.kernelStacks() {
		t.Error("both stacks should be on by default")
	}

	c, err = parseRecordFlags([]string{"--stacks", "kernel", "--", "/usr/bin/server", "-x", "--port", "1"}, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.command, " ") != "/usr/bin/server -x --port 1" || c.userStacks() || !c.kernelStacks() {
		t.Errorf("parsed %+v", c)
	}
	if c.output != "blockprof-cmd-server-20261126-101500.pb.gz" {
		t.Errorf("default output %q", c.output)
	}
	if !c.targetFrames || c.noWakers || c.wakerStacks || c.noTargets {
		t.Errorf("targets, wakers and target frames should be on by default, waker stacks off: %+v", c)
	}

	c, err = parseRecordFlags([]string{"-p", "1", "--syscalls", "read,connect,none", "--target", `^tcp .*:6379$`}, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.syscallNrs) != 2 || c.syscallNrs[0] != 0 || c.syscallNrs[1] != 42 || !c.noSyscall {
		t.Errorf("--syscalls parsed to %v (none: %v)", c.syscallNrs, c.noSyscall)
	}
	if !c.target.MatchString("tcp 10.0.0.1:5000->10.0.0.7:6379") || c.target.MatchString("file /x") {
		t.Errorf("--target parsed to %v", c.target)
	}
}

func TestParseRecordFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "nothing to profile"},
		{[]string{"-p", "1", "--", "x"}, "not both"},
		{[]string{"-p", "0"}, "invalid process"},
		{[]string{"-p", "x"}, "invalid argument"},
		{[]string{"-p", "1", "--format", "svg"}, "unknown --format"},
		{[]string{"-p", "1", "--stacks", "both"}, "unknown --stacks"},
		{[]string{"-p", "1", "--min-block", "10ms", "--max-block", "1ms"}, "below --min-block"},
		{[]string{"-p", "1", "extra"}, "unexpected argument"},
		{[]string{"--"}, "no command after --"},
		{[]string{"-p", "1", "-d", "-1s"}, "negative"},
		{[]string{"-p", "1", "--syscalls", "read,frobnicate"}, `unknown syscall "frobnicate"`},
		{[]string{"-p", "1", "--target", "("}, "bad --target pattern"},
		{[]string{"-p", "1", "--target", "tcp", "--no-targets"}, "--target needs targets"},
		{[]string{"-p", "1", "--waker-stacks", "--no-wakers"}, "--waker-stacks needs wakers"},
	} {
		_, err := parseRecordFlags(tc.args, time.Now(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"record", "--help"}, &out, &errb); code != exitOK {
		t.Fatalf("record --help: exit %d", code)
	}
	for _, want := range []string{"--pid", "--duration", "--output", "--format", "--min-block", "--stacks", "-- CMD"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("record --help lacks %q", want)
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "blockprof ") {
		t.Errorf("version: exit %d, output %q", code, out.String())
	}
}

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
