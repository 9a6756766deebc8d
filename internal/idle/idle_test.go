package idle

import (
	"testing"

	"blockprof/internal/symbolize"
)

func stack(fns ...string) []symbolize.Location {
	var out []symbolize.Location
	for _, fn := range fns {
		out = append(out, symbolize.Location{Frames: []symbolize.Frame{{Function: fn}}})
	}
	return out
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		syscall string
		stack   []symbolize.Location
		want    string
	}{
		{"futex", stack("runtime.futex", "runtime.futexsleep", "runtime.notesleep", "runtime.stopm", "runtime.findRunnable"), "go-scheduler"},
		{"epoll_pwait", stack("runtime.netpoll", "runtime.findRunnable"), "go-scheduler"},
		{"nanosleep", stack("runtime.usleep", "runtime.sysmon"), "go-scheduler"},
		{"epoll_wait", stack("epoll_wait", "uv__io_poll", "uv_run"), "event-wait"},
		{"ppoll", nil, "event-wait"},
		{"accept4", stack("accept4", "serve"), "accept"},
		{"rt_sigtimedwait", nil, "signal-wait"},
		// Blocking, even in a loop's thread: this is what we are here for.
		{"read", stack("read", "get_cached", "handle_request"), ""},
		{"futex", stack("runtime.futex", "runtime.lock2", "main.flush"), ""},
		{"clock_nanosleep", stack("clock_nanosleep", "time_sleep"), ""},
		{"none", stack("folio_wait_bit"), ""},
	} {
		if got := Classify(tc.syscall, tc.stack); got != tc.want {
			t.Errorf("Classify(%s, %v) = %q, want %q", tc.syscall, tc.stack, got, tc.want)
		}
	}
}

func TestThreadPool(t *testing.T) {
	cond := "futex 0x1000 wait_bitset"
	waits := []CondWait{
		{PID: 1, TID: 11, Syscall: "futex", Target: cond},
		{PID: 1, TID: 12, Syscall: "futex", Target: cond},
		{PID: 1, TID: 12, Syscall: "futex", Target: cond},                       // same thread, another stack
		{PID: 1, TID: 13, Syscall: "futex", Target: "futex 0x2000 wait_bitset"}, // alone: waits for a result
		{PID: 1, TID: 14, Syscall: "futex", Target: "futex 0x3000 wait"},        // mutex
		{PID: 1, TID: 15, Syscall: "futex", Target: "futex 0x3000 wait"},
		{PID: 1, TID: 16, Syscall: "futex", Target: "futex 0x4000 wait_bitset, timed"}, // GIL-like
		{PID: 1, TID: 17, Syscall: "futex", Target: "futex 0x4000 wait_bitset, timed"},
		{PID: 2, TID: 21, Syscall: "futex", Target: cond}, // same address, other process
		{PID: 1, TID: 18, Syscall: "read", Target: "fifo /tmp/f"},
	}
	want := []bool{true, true, true, false, false, false, false, false, false, false}
	got := ThreadPool(waits)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("wait %d (%+v): pool=%v, want %v", i, waits[i], got[i], want[i])
		}
	}
}
