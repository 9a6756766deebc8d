package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// checkTargets refuses, with one line, targets that cannot be recorded:
// a PID with no live process, a kernel thread (it has no user stack and
// makes no syscalls: the recording would stay empty for as long as it
// ran), and a -t thread that belongs to none of the -p processes.
func checkTargets(pids, tids []int) error {
	for _, pid := range pids {
		st, ok := readStat(pid)
		if !ok {
			return fmt.Errorf("no process with PID %d", pid)
		}
		if st.flags&pfKthread != 0 {
			return fmt.Errorf("PID %d is a kernel thread (%s): blockprof records user processes", pid, st.comm)
		}
	}
	for _, tid := range tids {
		owner := 0
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); err == nil {
				owner = pid
				break
			}
		}
		if owner == 0 {
			return fmt.Errorf("thread %d is not a thread of %s", tid, pidList(pids))
		}
	}
	return nil
}

func pidList(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	if len(pids) == 1 {
		return "process " + s[0]
	}
	return "processes " + strings.Join(s, ",")
}

// pfKthread is PF_KTHREAD of include/linux/sched.h, in /proc/PID/stat's
// flags field.
const pfKthread = 0x00200000

type procStat struct {
	comm  string
	state byte
	flags uint64
}

// readStat reads /proc/PID/stat; ok is false for no process, a zombie or
// one being reaped.
func readStat(pid int) (st procStat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, false
	}
	// The command name is parenthesised and may itself contain spaces and
	// parentheses: the fields start after the last ')'.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return st, false
	}
	st.comm = s[open+1 : end]
	f := strings.Fields(s[end+1:])
	if len(f) < 7 {
		return st, false
	}
	st.state = f[0][0]
	st.flags, _ = strconv.ParseUint(f[6], 10, 64)
	return st, st.state != 'Z' && st.state != 'X'
}

// processExists is true for a live, non-zombie process.
func processExists(pid int) bool {
	_, ok := readStat(pid)
	return ok
}

// checkCommand fails, with one line, for a command that cannot be
// started, before anything is attached (the exec gate would otherwise
// fail after attach, and the recording would be about the gate).
func checkCommand(command []string) error {
	if _, err := exec.LookPath(command[0]); err != nil {
		return fmt.Errorf("cannot run %s: %w", command[0], unwrapExec(err))
	}
	return nil
}

// unwrapExec drops exec.Error's own "exec: "name": " prefix (the caller
// names the command already).
func unwrapExec(err error) error {
	if e, ok := err.(*exec.Error); ok {
		return e.Err
	}
	return err
}
