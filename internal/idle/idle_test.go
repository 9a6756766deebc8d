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
