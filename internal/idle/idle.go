// Package idle tells waiting-for-work from blocking. An event loop inside
// its wait call, a listener in accept, the Go scheduler's parked threads:
// their off-CPU time is the healthy kind, and it would bury the blocking
// that matters if ranked with it.
//
// The rules, in order (the first that matches names the interval):
//
//	go-scheduler  a Go runtime thread with no goroutine to run (stopm,
//	              findRunnable, templateThread, sysmon, notetsleepg)
//	event-wait    epoll_wait/epoll_pwait/epoll_pwait2/poll/ppoll/select/
//	              pselect6: nothing was ready, or the thread would not block
//	accept        accept/accept4: waiting for the next connection
//	signal-wait   rt_sigtimedwait/rt_sigsuspend/pause
//
// Everything else is blocking. A loop that stalls *between* waits (the
// harmful case) is blocking by these rules, wherever it blocks.
package idle

import (
	"strings"

	"blockprof/internal/symbolize"
)

// goScheduler are Go runtime functions that only run on a thread with no
// goroutine to run (or the runtime's own background threads).
var goScheduler = []string{
	"runtime.stopm", "runtime.findRunnable", "runtime.findrunnable",
	"runtime.templateThread", "runtime.sysmon", "runtime.notetsleepg",
}

var waitSyscalls = map[string]string{
	"epoll_wait": "event-wait", "epoll_pwait": "event-wait", "epoll_pwait2": "event-wait",
	"poll": "event-wait", "ppoll": "event-wait", "select": "event-wait", "pselect6": "event-wait",
	"accept": "accept", "accept4": "accept",
	"rt_sigtimedwait": "signal-wait", "rt_sigsuspend": "signal-wait", "pause": "signal-wait",
}

// Classify returns the rule that makes an interval idle, or "" when it is
// blocking. syscall is the name the interval blocked in ("none" for none);
// stack is the symbolized stack, leaf first.
func Classify(syscall string, stack []symbolize.Location) string {
	for _, loc := range stack {
		for _, f := range loc.Frames {
			for _, fn := range goScheduler {
				if f.Function == fn {
					return "go-scheduler"
				}
			}
		}
	}
	return waitSyscalls[strings.TrimSpace(syscall)]
}
