package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockprof/internal/symbolize"
	"blockprof/profiles"
)

// reportProfile is a small loop-mode recording: a handler blocked on a
// redis peer over two connections, another on a file.
func reportProfile() *profiles.Profile {
	py := &symbolize.Mapping{File: "[python]", HasFunctions: true, HasFilenames: true, HasLineNumbers: true}
	frame := func(addr uint64, name, file string, line int) symbolize.Location {
		return symbolize.Location{Address: addr, Mapping: py,
			Frames: []symbolize.Frame{{Function: name, File: file, Line: line}}}
	}
	redis := []symbolize.Location{
		frame(0x10, "SocketBuffer._read_from_socket", "/usr/lib/python3/dist-packages/redis/connection.py", 214),
		frame(0x20, "ListCommands.blpop", "/usr/lib/python3/dist-packages/redis/commands/core.py", 2481),
		frame(0x30, "get_user", "/srv/app.py", 118),
		frame(0x40, "<module>", "/srv/app.py", 200),
	}
	file := []symbolize.Location{frame(0x50, "get_feed", "/srv/app.py", 140), frame(0x40, "<module>", "/srv/app.py", 200)}
	p := &profiles.Profile{Duration: 5 * time.Second, Stall: 10 * time.Millisecond,
		Comments: []string{"blockprof record --loop -p 9"},
		Loops: []profiles.Loop{{PID: 9, TID: 9, Comm: "python3", Thread: "python3", Wait: "epoll_wait",
			Iterations: 1000, Stalls: 30, StallTime: 900 * time.Millisecond, Worst: 50 * time.Millisecond}}}
	for i, target := range []string{"tcp 127.0.0.1:50001->127.0.0.1:6379", "tcp 127.0.0.1:50002->127.0.0.1:6379"} {
		l := map[string]string{"syscall": "recvfrom", "target": target}
		p.Samples = append(p.Samples,
			profiles.Sample{Stack: redis, PID: 9, TID: 9, Comm: "python3", Thread: "python3", State: "S",
				Kind: "blocking", Count: 10, Blocked: time.Duration(300+i) * time.Millisecond, Labels: l},
			profiles.Sample{Stack: redis, PID: 9, TID: 9, Comm: "python3", Thread: "python3", State: "S",
				Kind: "blocking", Labels: l, Loop: &profiles.LoopValues{Stalls: 10, Blocked: 300 * time.Millisecond}})
	}
	l := map[string]string{"syscall": "read", "target": "file /var/lib/app/feed.json"}
	p.Samples = append(p.Samples,
		profiles.Sample{Stack: file, PID: 9, TID: 9, Comm: "python3", State: "D", Kind: "blocking", Count: 10,
			Blocked: 300 * time.Millisecond, Labels: l},
		profiles.Sample{Stack: file, PID: 9, TID: 9, Comm: "python3", State: "D", Kind: "blocking", Labels: l,
			Loop: &profiles.LoopValues{Stalls: 10, Blocked: 300 * time.Millisecond}})
	return p
}

// `blockprof report FILE` prints the first screen record printed,
// from the file alone; --focus narrows it; bad arguments are one line.
func TestReport(t *testing.T) {
	p := reportProfile()
	file := filepath.Join(t.TempDir(), "svc.pb.gz")
	var buf bytes.Buffer
	if err := profiles.WritePprof(&buf, p, profiles.PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	profiles.WriteSummary(&want, p, profiles.SummaryOptions{Top: 10, File: file, Width: 100})

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"report", "--width", "100", file}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if out.String() != want.String() {
		t.Errorf("report:\n%s\nrecord's first screen:\n%s", out.String(), want.String())
	}
	for _, s := range []string{"get_user (app.py:118) → redis blpop  [recvfrom tcp → 127.0.0.1:6379 (redis)]",
		"get_feed (app.py:140) ← <module>  [read file /var/lib/app/feed.json]", "python3 9/9 (epoll_wait)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}

	out.Reset()
	if code := run(context.Background(), []string{"report", "--focus", "feed", "--top", "1", file}, &out, &errOut); code != exitOK {
		t.Fatalf("--focus: exit %d: %s", code, errOut.String())
	}
	if s := out.String(); strings.Contains(s, "get_user") || !strings.Contains(s, "get_feed") {
		t.Errorf("--focus feed:\n%s", s)
	}

	for _, args := range [][]string{{"report"}, {"report", "a", "b"}, {"report", "--focus", "(", file}} {
		errOut.Reset()
		if code := run(context.Background(), args, &out, &errOut); code != exitUsage ||
			strings.Count(errOut.String(), "\n") != 1 || !strings.HasPrefix(errOut.String(), "blockprof: ") {
			t.Errorf("%q: exit %d, %q", args, code, errOut.String())
		}
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"report", filepath.Join(t.TempDir(), "none.pb.gz")}, &out, &errOut); code != exitError ||
		strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("missing file: exit %d, %q", code, errOut.String())
	}
}
