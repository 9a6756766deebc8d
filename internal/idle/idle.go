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
//	thread-pool   workers parked on a shared condition variable (see
//	              ThreadPool: it needs all samples at once)
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

// CondWait is what the thread-pool rule needs of one sample.
type CondWait struct {
	PID, TID        int
	Syscall, Target string // labels: "futex", "futex 0x7f… wait_bitset"
}

// ThreadPool applies the thread-pool rule, which needs every sample at
// once:
//
//	thread-pool   an untimed condition-variable wait (futex wait_bitset, as
//	              glibc's pthread_cond_wait and sem_wait issue it) on a word
//	              that two or more threads of the process wait on: workers
//	              parked until a task is queued
//
// Mutex waits (futex wait, lock_pi) and timed waits (the CPython GIL's, a
// deadline-bound consumer) stay blocking: contention is what we are here
// to show. A single thread waiting on a condition variable is blocking
// too: it is waiting for a result, not for work.
func ThreadPool(waits []CondWait) []bool {
	type word struct {
		pid    int
		target string
	}
	threads := map[word]map[int]bool{}
	for _, w := range waits {
		if !untimedCondWait(w) {
			continue
		}
		k := word{w.PID, w.Target}
		if threads[k] == nil {
			threads[k] = map[int]bool{}
		}
		threads[k][w.TID] = true
	}
	out := make([]bool, len(waits))
	for i, w := range waits {
		out[i] = untimedCondWait(w) && len(threads[word{w.PID, w.Target}]) >= 2
	}
	return out
}

func untimedCondWait(w CondWait) bool {
	return w.Syscall == "futex" && strings.HasPrefix(w.Target, "futex ") && strings.HasSuffix(w.Target, " wait_bitset")
}
