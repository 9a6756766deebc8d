package main

// The first screen names the culprit: the application's handler, the call,
// and the backend it waited on, on real services.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
	"blockprof/profiles"
)

// startRedis runs redis-server on a free loopback port, without
// persistence, for the test's lifetime, and returns the port.
func startRedis(t *testing.T) int {
	t.Helper()
	testutil.RequireTool(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", t.TempDir(),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port
		}
		if i == 200 {
			t.Fatalf("redis-server never listened: %s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// debianPython is Debian's python3.11 with the packages a test imports
// (python3-fastapi, python3-uvicorn, python3-redis); skipped without them,
// a failure under CI, which installs them (.ci/run).
func debianPython(t *testing.T, modules string) string {
	t.Helper()
	const py = "/usr/bin/python3.11"
	out, err := exec.Command(py, "-c", "import "+modules).CombinedOutput()
	if err == nil {
		return py
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s cannot import %s; CI must install the Debian packages (.ci/run): %s", py, modules, out)
	}
	t.Skipf("%s cannot import %s: %s", py, modules, strings.TrimSpace(string(out)))
	return ""
}

// loopSection is the event-loop part of a first screen.
func loopSection(screen string) string {
	i := strings.Index(screen, "event loops")
	if i < 0 {
		return ""
	}
	rest := screen[i:]
	for _, end := range []string{"\nstacks by blocked time", "\ntop "} {
		if j := strings.Index(rest, end); j >= 0 {
			rest = rest[:j]
		}
	}
	return rest
}

// handlerRow is the loop table's row of handler fn with its continuation
// lines (what it waited on may wrap onto the next line), "" when absent.
func handlerRow(section, fn string) string {
	lines := strings.Split(section, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "  "+fn+" (") {
			continue
		}
		row := l
		for _, next := range lines[i+1:] {
			// A continuation line has no numbers in the table's columns.
			if strings.HasPrefix(next, "          ") && strings.TrimSpace(next[:min(len(next), 44)]) == "" {
				row += "\n" + next
				continue
			}
			break
		}
		return row
	}
	return ""
}

// A FastAPI service under uvicorn, sync calls in three async handlers
// (redis-py to a real redis-server, urllib to an HTTP upstream, a FIFO
// read) and two done right (asyncio.to_thread, redis.asyncio), under wrk:
// the loop table names each bad handler with its peer or file, never the
// good ones, and its stall times agree with the app's own clock.
func TestCulpritFastAPI(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "wrk")
	py := debianPython(t, "fastapi, uvicorn, redis")
	redisPort := startRedis(t)
	const seconds = 4
	w := testutil.Start(t, py, pyWorkload(t, "fastapi_app.py"), fmt.Sprint(redisPort), fmt.Sprint(seconds))
	w.Ready(t)
	ids := w.TIDs()
	loopTID, appPort, upstream := ids["loop"], ids["port"], ids["upstream"]
	// Wide enough that the peer stays on the handler's line most of the
	// time (the layout itself is golden-tested in profiles).
	t.Setenv("COLUMNS", "200")
	r := startRecord(t, "--loop", "--stall", "10ms", "-p", fmt.Sprint(w.PID()))
	w.Go(t)
	// One wrk per endpoint, one connection each, for less than the app
	// serves: every request is answered inside the recording.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var loads []*exec.Cmd
	for _, path := range []string{"user", "profile", "feed", "thread", "async"} {
		c := exec.CommandContext(ctx, "wrk", "-t1", "-c1", "-d3s", "--timeout", "2s",
			fmt.Sprintf("http://127.0.0.1:%d/%s", appPort, path))
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		loads = append(loads, c)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("wrk /%s:\n%s", path, out.String())
			}
		})
	}
	for _, c := range loads {
		if err := c.Wait(); err != nil {
			t.Errorf("wrk: %v", err)
		}
	}
	truth, err := w.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	screen := r.stdout.String()
	section := loopSection(screen)
	if section == "" || !strings.Contains(section, fmt.Sprintf("/%d (epoll_wait)", loopTID)) {
		t.Fatalf("no event-loop section for loop thread %d:\n%s", loopTID, screen)
	}
	for _, fn := range []string{"get_user_thread", "lookup_in_thread", "get_user_async"} {
		if strings.Contains(section, fn) {
			t.Errorf("the loop section lists %s, which does not block the loop:\n%s", fn, section)
		}
	}
	want := map[string][]string{
		"get_user":    {"→ redis blpop", fmt.Sprintf("[recvfrom tcp → 127.0.0.1:%d (redis)]", redisPort)},
		"get_profile": {"→ urllib urlopen", fmt.Sprintf("tcp → 127.0.0.1:%d (http)]", upstream)},
		"get_feed":    {"[read fifo ", "/feed]"},
	}
	for fn, parts := range want {
		row := handlerRow(section, fn)
		if !strings.Contains(row, "(fastapi_app.py:") {
			t.Errorf("no loop-table row for %s:\n%s", fn, section)
			continue
		}
		for _, p := range parts {
			if !strings.Contains(row, p) {
				t.Errorf("%s's row lacks %q:\n%s", fn, p, row)
			}
		}
	}

	// The times: the handlers' stall time off the CPU (what the table
	// shows) against the app's own clock around each blocking call.
	f, err := os.Open(r.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profiles.ReadPprof(f)
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]profiles.LoopHandler{}
	for _, h := range profiles.LoopHandlers(p, loopTID) {
		handlers[h.Func] = h
	}
	for fn := range want {
		b, ok := truth.Block(fn)
		if !ok || b.Count == 0 {
			t.Errorf("the app's clock has no %s calls: %+v", fn, truth)
			continue
		}
		h := handlers[fn]
		got := (h.Blocked + h.RunQueue).Seconds()
		t.Logf("%s: %d calls, %.3fs by the app's clock; %d stalls, %.3fs blocked + run-queue (%.3fs stall time), %+.1f%%",
			fn, b.Count, b.Seconds, h.Stalls, got, h.Time.Seconds(), 100*(got-b.Seconds)/b.Seconds)
		testutil.Near(t, got, b.Seconds, 0.10, fn+" stall seconds off-CPU")
	}
}

// culpritLine finds the first-screen stack line whose "where" starts at
// fn's frame, joined with its continuation line.
func culpritLine(screen, fn string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if j := strings.Index(l, " S  "); j >= 0 && strings.HasPrefix(l[j+4:], fn+" (") {
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "                        [") {
				l += "\n" + lines[i+1]
			}
			return l
		}
	}
	return ""
}

// peerOf is the remote end of a "tcp LOCAL->REMOTE" target.
func peerOf(target string) string {
	_, remote, _ := strings.Cut(target, "->")
	return remote
}

// A Go HTTP handler calling a slow TCP backend (a blocking read): the
// first screen's line starts at the application function, under the
// net/http machinery, and shows the call and the peer.
func TestCulpritGoHandler(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "gohttp")
	t.Setenv("COLUMNS", "200")
	truth, _, r := profileWorkload(t, bin, []string{"-n", "20"})
	b, ok := truth.Block("main.fetchQuote")
	if !ok {
		t.Fatalf("no truth for main.fetchQuote: %+v", truth)
	}
	line := culpritLine(r.stdout.String(), "main.fetchQuote")
	for _, want := range []string{"main.fetchQuote (main.go:", "← main.quoteHandler", "→ syscall.Read",
		"[read tcp → " + peerOf(b.Target) + "]"} {
		if !strings.Contains(line, want) {
			t.Errorf("first-screen line %q lacks %q", line, want)
		}
	}
}

// A C program blocked in recv through libc (built -O2, no frame
// pointers): the line starts at the program's function and shows libc's
// call and the peer.
func TestCulpritC(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "tcprecv/tcprecv.c", "-O2")
	t.Setenv("COLUMNS", "200")
	truth, _, r := profileWorkload(t, bin, nil)
	b := truth.Blocks[0]
	line := culpritLine(r.stdout.String(), "client_recv")
	for _, want := range []string{"client_recv (tcprecv.c:", "→ libc recv", "[recvfrom tcp → " + peerOf(b.Target) + "]"} {
		if !strings.Contains(line, want) {
			t.Errorf("first-screen line %q lacks %q", line, want)
		}
	}
}
