package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseRecordFlags(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)
	c, err := parseRecordFlags([]string{"-p", "42,43", "-p", "44", "-t", "50", "-d", "3s", "--min-block", "1ms", "--format", "folded"}, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.pids) != 3 || c.pids[2] != 44 || c.tids[0] != 50 || c.duration != 3*time.Second || c.minBlock != time.Millisecond {
		t.Errorf("parsed %+v", c)
	}
	if c.output != "blockprof-42-20261126-101500.folded" {
		t.Errorf("default output %q", c.output)
	}
	if !c.userStacks() || !c.kernelStacks() {
		t.Error("both stacks should be on by default")
	}

	c, err = parseRecordFlags([]string{"--stacks", "kernel", "--", "/usr/bin/server", "-x", "--port", "1"}, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.command, " ") != "/usr/bin/server -x --port 1" || c.userStacks() || !c.kernelStacks() {
		t.Errorf("parsed %+v", c)
	}
	if c.output != "blockprof-cmd-server-20261126-101500.pb.gz" {
		t.Errorf("default output %q", c.output)
	}
	if !c.targetFrames || c.noWakers || c.wakerStacks || c.noTargets {
		t.Errorf("targets, wakers and target frames should be on by default, waker stacks off: %+v", c)
	}

	c, err = parseRecordFlags([]string{"-p", "1", "--syscalls", "read,connect,none", "--target", `^tcp .*:6379$`}, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.syscallNrs) != 2 || c.syscallNrs[0] != 0 || c.syscallNrs[1] != 42 || !c.noSyscall {
		t.Errorf("--syscalls parsed to %v (none: %v)", c.syscallNrs, c.noSyscall)
	}
	if !c.target.MatchString("tcp 10.0.0.1:5000->10.0.0.7:6379") || c.target.MatchString("file /x") {
		t.Errorf("--target parsed to %v", c.target)
	}
}

func TestParseRecordFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "nothing to profile"},
		{[]string{"-p", "1", "--", "x"}, "not both"},
		{[]string{"-p", "0"}, "invalid process"},
		{[]string{"-p", "x"}, "invalid argument"},
		{[]string{"-p", "1", "--format", "svg"}, "unknown --format"},
		{[]string{"-p", "1", "--stacks", "both"}, "unknown --stacks"},
		{[]string{"-p", "1", "--min-block", "10ms", "--max-block", "1ms"}, "below --min-block"},
		{[]string{"-p", "1", "extra"}, "unexpected argument"},
		{[]string{"--"}, "no command after --"},
		{[]string{"-p", "1", "-d", "-1s"}, "negative"},
		{[]string{"-p", "1", "--syscalls", "read,frobnicate"}, `unknown syscall "frobnicate"`},
		{[]string{"-p", "1", "--target", "("}, "bad --target pattern"},
		{[]string{"-p", "1", "--target", "tcp", "--no-targets"}, "--target needs targets"},
		{[]string{"-p", "1", "--waker-stacks", "--no-wakers"}, "--waker-stacks needs wakers"},
	} {
		_, err := parseRecordFlags(tc.args, time.Now(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"record", "--help"}, &out, &errb); code != exitOK {
		t.Fatalf("record --help: exit %d", code)
	}
	for _, want := range []string{"--pid", "--duration", "--output", "--format", "--min-block", "--stacks", "-- CMD"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("record --help lacks %q", want)
		}
	}
	out.Reset()
	// Every sub-command prints its usage once.
	for _, cmd := range []string{"record", "now", "serve", "report"} {
		out.Reset()
		if code := run(context.Background(), []string{cmd, "--help"}, &out, &errb); code != exitOK {
			t.Errorf("%s --help: exit %d", cmd, code)
		}
		if n := strings.Count(out.String(), "Usage:"); n != 1 {
			t.Errorf("%s --help prints its usage %d times:\n%s", cmd, n, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "blockprof ") {
		t.Errorf("version: exit %d, output %q", code, out.String())
	}
}
