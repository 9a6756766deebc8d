package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// Loop-only flags without loop mode would change nothing: refused.
func TestParseRecordFlagsLoopOnly(t *testing.T) {
	for _, args := range [][]string{
		{"-p", "1", "--stall", "10ms"},
		{"-p", "1", "--loop-hz", "99"},
	} {
		_, err := parseRecordFlags(args, time.Now(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "needs --loop") {
			t.Errorf("%q: error %v, want it to need --loop", args, err)
		}
	}
	for _, args := range [][]string{
		{"-p", "1", "--loop", "--stall", "10ms", "--loop-hz", "99"},
		{"-p", "1", "--loop-thread", "1", "--stall", "10ms"},
	} {
		if _, err := parseRecordFlags(args, time.Now(), io.Discard); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// Targets that cannot be recorded get one line, exit 1, before anything is
// attached, and no output file and no first screen.
func TestRecordRefusesUnrecordableTargets(t *testing.T) {
	testutil.RequireRoot(t)
	bin := blockprofBin(t)
	kthread := firstKernelThread(t)
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"kernel thread", []string{"-p", fmt.Sprint(kthread)}, "is a kernel thread"},
		{"thread of another process", []string{"-p", fmt.Sprint(sleeper.Process.Pid), "-t", fmt.Sprint(os.Getpid())},
			fmt.Sprintf("thread %d is not a thread of process %d", os.Getpid(), sleeper.Process.Pid)},
		{"missing command", []string{"--", "/nonexistent/cmd"}, "cannot run /nonexistent/cmd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "x.pb.gz")
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, append([]string{"record", "-d", "1s", "-o", out}, tc.args...)...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitError {
				t.Fatalf("exit: %v, want code %d; stderr %q", err, exitError, stderr.String())
			}
			msg := strings.TrimRight(stderr.String(), "\n")
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "blockprof: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q: want one line containing %q", msg, tc.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("a first screen was printed: %q", stdout.String())
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a refused run left an output file")
			}
		})
	}
}

// firstKernelThread finds a kernel thread (kthreadd is PID 2 on most
// machines, not in every PID namespace).
func firstKernelThread(t *testing.T) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.flags&pfKthread != 0 {
			return pid
		}
	}
	t.Fatal("no kernel thread visible in /proc")
	return 0
}
