package main

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// busyPython blocks often on many threads (short sleeps, a socket ping-pong)
// until killed: a target whose symbols, Python frames and unwind tables take
// a while to load after attach, and whose drains are large.
const busyPython = `
import socket, threading, time
def sleeper():
    while True:
        time.sleep(0.001)
def pinger(s):
    while True:
        s.send(b"x"); s.recv(1)
def ponger(s):
    while True:
        s.recv(1); s.send(b"y")
for _ in range(8):
    threading.Thread(target=sleeper, daemon=True).start()
a, b = socket.socketpair()
threading.Thread(target=pinger, args=(a,), daemon=True).start()
threading.Thread(target=ponger, args=(b,), daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
`

// startBusyPython starts busyPython and waits until its threads run.
func startBusyPython(t *testing.T, lifetime time.Duration) *exec.Cmd {
	t.Helper()
	py := testutil.Pythons()[0]
	testutil.RequirePython(t, py)
	src := busyPython
	if lifetime > 0 {
		src = strings.Replace(src, "time.sleep(3600)", "time.sleep("+strconv.FormatFloat(lifetime.Seconds(), 'f', 3, 64)+")", 1)
	}
	cmd := exec.Command(py.Path, "-c", src)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("busy python did not start: %q, %v", line, err)
	}
	return cmd
}

// The profile covers exactly the -d asked for, counted from when counting
// started: not the time attach took to load symbols and tables, nor the
// time the last drain and detach took.
func TestRecordWindowLength(t *testing.T) {
	testutil.RequireRoot(t)
	py := startBusyPython(t, 0)
	const asked = 3 * time.Second
	r := startRecord(t, "-p", strconv.Itoa(py.Process.Pid), "-d", asked.String())
	p := r.wait(t)
	got := time.Duration(p.DurationNanos)
	t.Logf("-d %v: profile duration %v", asked, got)
	if d := got - asked; d < 0 || d > 50*time.Millisecond {
		t.Errorf("profile duration %v for -d %v: want within 50ms above", got, asked)
	}
	if !strings.HasPrefix(r.stdout.String(), "blockprof: recorded 3.0") {
		t.Errorf("first screen does not start with the window asked for:\n%s", r.stdout.String())
	}
	if strings.Contains(r.stdout.String(), "stopped after") {
		t.Errorf("first screen says the recording stopped early:\n%s", r.stdout.String())
	}
}

// A target that exits before -d ends the recording early, and the first
// screen says so.
func TestRecordWindowTargetExited(t *testing.T) {
	testutil.RequireRoot(t)
	py := startBusyPython(t, 1500*time.Millisecond)
	r := startRecord(t, "-p", strconv.Itoa(py.Process.Pid), "-d", "10s")
	p := r.wait(t)
	if got := time.Duration(p.DurationNanos); got >= 5*time.Second {
		t.Errorf("profile duration %v: the target exited after 1.5s", got)
	}
	if !strings.Contains(r.stdout.String(), "of the 10.00s asked for: target exited") {
		t.Errorf("first screen does not say why the recording is shorter than asked:\n%s", r.stdout.String())
	}
}
