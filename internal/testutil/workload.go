package testutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"blockprof/testdata/workloads/wl"
)

// The truth a workload writes to $BLOCKPROF_TRUTH: one definition, shared
// with the Go workloads that write it. Block times are measured with
// CLOCK_MONOTONIC around each blocking call, so they include the run-queue
// wait after the wake-up, as a profiler's blocked + run-queue time does.
type (
	Truth = wl.Truth
	Block = wl.Block
	CPU   = wl.CPU
)

// ReadTruth parses a truth file.
func ReadTruth(path string) (Truth, error) {
	var tr Truth
	data, err := os.ReadFile(path)
	if err != nil {
		return tr, fmt.Errorf("workload wrote no truth: %w", err)
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		return tr, fmt.Errorf("truth %s: %w (%q)", path, err, data)
	}
	if tr.PID <= 0 {
		return tr, fmt.Errorf("truth %s has no pid: %q", path, data)
	}
	for i := range tr.Blocks {
		if tr.Blocks[i].PID == 0 {
			tr.Blocks[i].PID = tr.PID
		}
	}
	for i := range tr.CPU {
		if tr.CPU[i].PID == 0 {
			tr.CPU[i].PID = tr.PID
		}
	}
	return tr, nil
}

// Workload is a running workload process.
type Workload struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	truth string
	ready chan struct{} // closed at the "ready" line
	exit  chan struct{} // closed once the process has been waited for

	mu       sync.Mutex
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	readyMsg string
	waitErr  error
}

// Start runs the workload at path in its own process group, with a pipe on
// stdin and $BLOCKPROF_TRUTH set to a fresh temp file. The process group is
// killed when the test ends; its stderr is logged if the test failed.
func Start(t testing.TB, path string, args ...string) *Workload {
	t.Helper()
	w := &Workload{
		t:     t,
		truth: filepath.Join(t.TempDir(), "truth.json"),
		ready: make(chan struct{}),
		exit:  make(chan struct{}),
	}
	w.cmd = exec.Command(path, args...)
	w.cmd.Env = append(os.Environ(), "BLOCKPROF_TRUTH="+w.truth)
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.cmd.Stderr = &lockedWriter{&w.mu, &w.stderr}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdoutDone := make(chan struct{})
	go func() {
		w.readStdout(stdout)
		close(stdoutDone)
	}()
	go func() {
		// Wait closes the pipe: read it to EOF first, or the tail is lost.
		<-stdoutDone
		err := w.cmd.Wait()
		w.mu.Lock()
		w.waitErr = err
		w.mu.Unlock()
		close(w.exit)
	}()
	t.Cleanup(func() {
		// The whole group: a workload's children must not outlive the test.
		syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.exit
		if t.Failed() {
			t.Logf("workload %s stdout:\n%s\nstderr:\n%s", filepath.Base(path), w.Stdout(), w.Stderr())
		}
	})
	return w
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (w *Workload) readStdout(r io.Reader) {
	sc := bufio.NewScanner(r)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		w.mu.Lock()
		w.stdout.WriteString(line + "\n")
		if !seen && (line == "ready" || strings.HasPrefix(line, "ready ")) {
			seen = true
			w.readyMsg = line
			close(w.ready)
		}
		w.mu.Unlock()
	}
}

// PID is the workload's process id.
func (w *Workload) PID() int { return w.cmd.Process.Pid }

// Ready waits (up to 10 s) until the workload printed its "ready" line:
// its threads exist and are parked before the measured phase.
func (w *Workload) Ready(t testing.TB) {
	t.Helper()
	select {
	case <-w.ready:
	case <-w.exit:
		// A ready line printed just before a crash still counts.
		select {
		case <-w.ready:
			return
		default:
		}
		t.Fatalf("workload exited before ready: %v\nstderr: %s", w.exitErr(), w.Stderr())
	case <-time.After(10 * time.Second):
		t.Fatalf("workload not ready after 10s; stdout: %q stderr: %q", w.Stdout(), w.Stderr())
	}
}

// TIDs are the thread ids by role from the ready line ("ready reader=1234
// sleeper=1235"; a "tids:" word is allowed after "ready"). Call after Ready.
func (w *Workload) TIDs() map[string]int {
	w.mu.Lock()
	line := w.readyMsg
	w.mu.Unlock()
	return parseTIDs(line)
}

func parseTIDs(line string) map[string]int {
	tids := map[string]int{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil {
			tids[k] = n
		}
	}
	return tids
}

// Go starts the measured phase: one line on stdin, then EOF.
func (w *Workload) Go(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
		t.Fatalf("workload stdin: %v (exited: %v)", err, w.exitErr())
	}
	w.stdin.Close()
}

// Wait waits up to timeout for the workload to exit 0 and returns its
// truth. On timeout the workload is killed.
func (w *Workload) Wait(timeout time.Duration) (Truth, error) {
	select {
	case <-w.exit:
	case <-time.After(timeout):
		syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.exit
		return Truth{}, fmt.Errorf("workload still running after %v; stderr: %s", timeout, w.Stderr())
	}
	if err := w.exitErr(); err != nil {
		return Truth{}, fmt.Errorf("workload: %v; stderr: %s", err, w.Stderr())
	}
	tr, err := ReadTruth(w.truth)
	if err == nil && tr.PID != w.PID() {
		err = fmt.Errorf("truth is from pid %d, workload is %d", tr.PID, w.PID())
	}
	return tr, err
}

// Signal sends sig to the workload process (not its group).
func (w *Workload) Signal(sig syscall.Signal) error {
	return w.cmd.Process.Signal(sig)
}

// Exited is closed once the workload has exited.
func (w *Workload) Exited() <-chan struct{} { return w.exit }

func (w *Workload) exitErr() error {
	select {
	case <-w.exit:
	default:
		return errors.New("still running")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waitErr
}

// Stdout is everything the workload printed on stdout so far.
func (w *Workload) Stdout() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stdout.String()
}

// Stderr is everything the workload printed on stderr so far.
func (w *Workload) Stderr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.String()
}

// StdoutValue parses a "key=NUMBER" line, as pingpong prints its results.
func StdoutValue(stdout, key string) (float64, error) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `=([0-9.eE+-]+)$`)
	m := re.FindStringSubmatch(stdout)
	if m == nil {
		return 0, fmt.Errorf("no %s= line in %q", key, stdout)
	}
	return strconv.ParseFloat(m[1], 64)
}

// RoundtripsPerSec parses the pingpong workload's result line.
func RoundtripsPerSec(stdout string) (float64, error) {
	return StdoutValue(stdout, "roundtrips_per_sec")
}
