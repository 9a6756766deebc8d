package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockprof/internal/testutil"

	"github.com/google/pprof/profile"
)

// served is a `blockprof serve` process started by a test.
type served struct {
	cmd    *exec.Cmd
	addr   string // host:port of its HTTP server
	keep   string // its --keep-windows directory
	stderr bytes.Buffer
	// programs loaded before it started (another blockprof beside the tests)
	before []string
}

// startServe runs `blockprof serve ARGS` on a free loopback port and
// waits until it serves.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	dir := t.TempDir()
	s := &served{keep: filepath.Join(dir, "windows"), before: loadedPrograms(t, nil)}
	ready := filepath.Join(dir, "ready")
	args = append([]string{"serve", "--listen", "127.0.0.1:0", "--ready-file", ready, "--keep-windows", s.keep}, args...)
	s.cmd = exec.Command(blockprofBin(t), args...)
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			s.addr = string(b)
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("blockprof serve not ready after 10s; stderr: %s", s.stderr.String())
		}
	}
}

func (s *served) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// waitMetric polls /metrics until the line "name value" shows.
func (s *served) waitMetric(t *testing.T, name, value string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, b := s.get(t, "/metrics"); strings.Contains(string(b), "\n"+name+" "+value+"\n") {
			return
		}
	}
	_, b := s.get(t, "/metrics")
	t.Fatalf("no %q in /metrics:\n%s", name+" "+value, b)
}

// stop sends SIGTERM and waits for a clean exit with nothing left loaded.
func (s *served) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("blockprof serve: %v; stderr: %s", err, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("blockprof serve did not exit on SIGTERM; stderr: %s", s.stderr.String())
	}
	t.Logf("serve stderr:\n%s", s.stderr.String())
	// The kernel frees programs after an RCU grace period.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left := loadedPrograms(t, s.before)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BPF programs still loaded after SIGTERM: %v", left)
		}
	}
}

// windows parses the windows serve kept, in order.
func (s *served) windows(t *testing.T) []*profile.Profile {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(s.keep, "window-*.pb.gz"))
	slices.Sort(names)
	var out []*profile.Profile
	for _, n := range names {
		out = append(out, readProfile(t, n))
	}
	return out
}

// dropEarlyWaits removes waits that began before counting started (the
// workload's threads waited for "go" since before attach).
func dropEarlyWaits(p *profile.Profile) {
	p.Sample = slices.DeleteFunc(p.Sample, func(s *profile.Sample) bool {
		c := strings.Join(s.Label["cut"], "")
		return c == "before" || c == "both"
	})
}

// The endpoint, as `go tool pprof URL?seconds=N` uses it: the profile of
// the next N seconds reads without a warning, across window boundaries,
// and holds the workload's functions with their own clock's times (±5 %).
// Before the first window the last-window endpoint answers 503; SIGTERM
// flushes the last window and detaches.
func TestServeEndpoint(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/goblock"))
	w := testutil.Start(t, bin, "-n", "40")
	w.Ready(t)
	// By name (--comm): found by the scanner, added while recording, and
	// serve outlives it (with -p it would stop when its targets exit).
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", w.PID()))
	if err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--comm", "^"+regexp.QuoteMeta(strings.TrimSpace(string(comm)))+"$",
		"--window", "1s", "--drain-interval", "50ms")
	s.waitMetric(t, "blockprof_targets_total", "1")

	if code, body := s.get(t, "/debug/pprof/block"); code != http.StatusServiceUnavailable || bytes.Count(body, []byte("\n")) != 1 {
		t.Errorf("last window before the first: %d %q, want 503 and one line", code, body)
	}
	if code, body := s.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := s.get(t, "/debug/pprof/block?seconds=x"); code != http.StatusBadRequest {
		t.Errorf("seconds=x: %d, want 400", code)
	}

	type result struct {
		code int
		body []byte
	}
	span := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + s.addr + "/debug/pprof/block?seconds=5")
		if err != nil {
			span <- result{0, []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		span <- result{resp.StatusCode, b}
	}()
	s.waitMetric(t, "blockprof_spans_open", "1") // the span has started: now run
	w.Go(t)
	truth, err := w.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-span:
	case <-time.After(20 * time.Second):
		t.Fatal("no answer to seconds=5 after 20s")
	}
	if res.code != http.StatusOK {
		t.Fatalf("seconds=5: %d %s", res.code, res.body)
	}
	path := filepath.Join(t.TempDir(), "span.pb.gz")
	if err := os.WriteFile(path, res.body, 0o644); err != nil {
		t.Fatal(err)
	}
	p := readProfile(t, path) // go tool pprof -top and -traces: stderr empty
	dropEarlyWaits(p)
	if d := time.Duration(p.DurationNanos); d < 5*time.Second || d > 5500*time.Millisecond {
		t.Errorf("span lasted %v, want 5s", d)
	}
	testutil.CheckTruth(t, truth, map[string]int{"blockRead": 1, "blockNanosleep": 1}, nil)
	for _, b := range truth.Blocks {
		fn := "main." + b.Func
		got, stack := offCPU(t, p, int64(b.TID), fn)
		t.Logf("endpoint %s: %.4fs, workload %.4fs (%+.2f%%); stack %v", fn, got, b.Seconds, 100*(got-b.Seconds)/b.Seconds, stack)
		testutil.Near(t, got, b.Seconds, 0.05, fn+" off-CPU seconds from the endpoint")
	}

	code, last := s.get(t, "/debug/pprof/block")
	if code != http.StatusOK || len(last) == 0 {
		t.Errorf("last window: %d, %d bytes", code, len(last))
	}
	_, metrics := s.get(t, "/metrics")
	for _, re := range []string{`(?m)^blockprof_windows_total [1-9]`, `(?m)^blockprof_intervals_total [1-9]`,
		`(?m)^blockprof_resident_memory_bytes [1-9]\d{6,}$`, `(?m)^# TYPE blockprof_drops_total counter$`} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("/metrics lacks %s:\n%s", re, metrics)
		}
	}
	s.stop(t)

	// The windows cover the whole recording, one after the other: summed,
	// they hold the workload's times too.
	ws := s.windows(t)
	if len(ws) < 2 {
		t.Fatalf("%d windows kept, want several", len(ws))
	}
	for i := 1; i < len(ws); i++ {
		// Starts are wall clock, durations monotonic: equal within 1µs.
		if end := ws[i-1].TimeNanos + ws[i-1].DurationNanos; max(ws[i].TimeNanos-end, end-ws[i].TimeNanos) > 1000 {
			t.Errorf("window %d starts at %d, the one before ended at %d", i, ws[i].TimeNanos, end)
		}
	}
	sum, err := profile.Merge(ws)
	if err != nil {
		t.Fatal(err)
	}
	dropEarlyWaits(sum)
	for _, b := range truth.Blocks {
		fn := "main." + b.Func
		got, _ := offCPU(t, sum, int64(b.TID), fn)
		testutil.Near(t, got, b.Seconds, 0.05, fn+" off-CPU seconds in the windows")
	}
}
