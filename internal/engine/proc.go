package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// liveState reads /proc/PID/stat: true unless the process is a zombie or
// dead. The state follows the parenthesised command name, which may
// itself contain spaces and parentheses.
func liveState(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// gateThreads lists the threads of the exec gate other than its leader.
func gateThreads(pid int) map[uint32]bool {
	out := map[uint32]bool{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		var tid uint32
		if _, err := fmt.Sscan(t.Name(), &tid); err == nil && int(tid) != pid {
			out[tid] = true
		}
	}
	return out
}

// waitExec waits until pid no longer runs our own executable (the exec
// gate has exec'ed the command), or the timeout passes.
func waitExec(pid int, timeout time.Duration) {
	self, _ := os.Readlink("/proc/self/exe")
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if now, err := os.Readlink(exe); err != nil || now != self {
			return
		}
	}
}

// waitAllExit returns true once none of pids is alive, false if ctx or
// the recording (done) ends first.
func waitAllExit(ctx context.Context, done <-chan struct{}, pids []int) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		alive := false
		for _, p := range pids {
			alive = alive || ProcessExists(p)
		}
		if !alive {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-done:
			return false
		case <-t.C:
		}
	}
}

// children lists the child processes of tgid's threads.
func children(tgid uint32) []uint32 {
	var out []uint32
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", tgid))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(b)) {
			if pid, err := strconv.ParseUint(field, 10, 32); err == nil {
				out = append(out, uint32(pid))
			}
		}
	}
	return out
}

func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
