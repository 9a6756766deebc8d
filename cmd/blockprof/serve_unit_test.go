package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blockprof/profiles"
)

func TestParseServeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{nil, "nothing to profile"},
		{[]string{"-p", "1", "--window", "500ms"}, "below 1s"},
		{[]string{"--comm", "("}, "bad --comm"},
		{[]string{"--cgroup", "/nonexistent"}, "not a cgroup v2 directory"},
		{[]string{"-p", "1", "--push", "pyroscope:4040"}, "http://"},
		{[]string{"-p", "1", "extra"}, "unexpected argument"},
		{[]string{"-p", "1", "--push-queue", "0"}, "at least 1"},
	} {
		_, err := parseServeFlags(tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.err)
		}
	}
	c, err := parseServeFlags([]string{"--comm", "^nginx$"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.window != 15*time.Second || c.listen != "127.0.0.1:6060" || c.service != "nginx" || c.queue != 16 || !c.late() {
		t.Errorf("defaults: %+v", c)
	}
	c, err = parseServeFlags([]string{"-p", "1", "--window", "2s", "--drain-interval", "5s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.late() || c.interval != time.Second {
		t.Errorf("-p only: late %v, drain interval %v", c.late(), c.interval)
	}
}

// Slices summed into a window: samples side by side, drops added, the
// span from the first start to the last end.
func TestMergeProfiles(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := &profiles.Profile{Start: t0, Duration: time.Second, Comments: []string{"first"},
		Samples: []profiles.Sample{{PID: 1, Count: 2}}, Drops: map[string]uint64{"x": 1},
		Processes: map[int]profiles.Process{1: {PID: 1}}}
	b := &profiles.Profile{Start: t0.Add(time.Second), Duration: 2 * time.Second, Comments: []string{"second"},
		Samples: []profiles.Sample{{PID: 2, Count: 3}}, Drops: map[string]uint64{"x": 2, "y": 1},
		Processes: map[int]profiles.Process{2: {PID: 2}}}
	m := mergeProfiles([]*profiles.Profile{a, b})
	if !m.Start.Equal(t0) || m.Duration != 3*time.Second || len(m.Samples) != 2 ||
		m.Drops["x"] != 3 || m.Drops["y"] != 1 || len(m.Processes) != 2 || m.Comments[0] != "first" {
		t.Errorf("merged: %+v", m)
	}
	if mergeProfiles([]*profiles.Profile{a}) != a {
		t.Error("one slice is its own window")
	}
}

// A cgroup tree: processes of the directory and of its sub-cgroups.
func TestScanCgroup(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "pod1", "ctr")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("10\n11\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte("12\n"), 0o644)
	got, err := scanCgroup(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int{10, 11, 12}) {
		t.Errorf("scanCgroup: %v, want [10 11 12]", got)
	}
	if _, err := scanCgroup(filepath.Join(dir, "gone")); err == nil {
		t.Error("a missing cgroup: want an error")
	}
}

func TestParseVmRSS(t *testing.T) {
	if got := parseVmRSS("Name:\tx\nVmRSS:\t   61234 kB\nThreads: 4\n"); got != 61234*1024 {
		t.Errorf("VmRSS: %d", got)
	}
	if got := parseVmRSS("Name:\tx\n"); got != -1 {
		t.Errorf("no VmRSS: %d, want -1", got)
	}
}
