package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"blockprof/internal/testutil"
)

// innermostMain is the innermost main.* function of a stack of
// stackNames entries ("" if none).
func innermostMain(st []string) string {
	for _, f := range st {
		if strings.HasPrefix(f, "main.") {
			name, _, _ := strings.Cut(f, " ")
			return name
		}
	}
	return ""
}

// record --goroutines on goparks (the machine's Go): each function's
// goroutine samples match the workload's clock within 5 %, with the right
// wait reason, and the IO wait names the server it read from. Go's own
// block profile, written by the workload, agrees within 5 % on the
// channel, select and mutex waits (delay: park to made runnable, as the
// runtime measures it), and lacks the sleeps and network waits blockprof
// shows.
func TestRecordGoroutines(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGoToolchain(t, "goparks", "")
	bp := filepath.Join(t.TempDir(), "block.pprof")
	truth, p, _ := profileWorkload(t, bin, []string{"-d", "2s", "-blockprofile", bp}, "-q", "--goroutines", "--drain-interval", "200ms")
	delay, runq := sampleIndex(t, p, "delay"), sampleIndex(t, p, "runqueue")

	type sum struct {
		blocked, runq int64
		reasons       map[string]bool
		targets       map[string]bool
	}
	by := map[string]*sum{}
	for _, s := range p.Sample {
		if label(s, "kind") != "goroutine" {
			if label(s, "wait_reason") != "" && label(s, "kind") != "idle" {
				t.Errorf("wait_reason on a %q sample", label(s, "kind"))
			}
			continue
		}
		if label(s, "goid") == "" {
			t.Errorf("goroutine sample without goid: %v", s.Label)
		}
		fn := innermostMain(stackNames(s))
		x := by[fn]
		if x == nil {
			x = &sum{reasons: map[string]bool{}, targets: map[string]bool{}}
			by[fn] = x
		}
		x.blocked += s.Value[delay]
		x.runq += s.Value[runq]
		x.reasons[label(s, "wait_reason")] = true
		if tg := label(s, "target"); tg != "" {
			x.targets[tg] = true
		}
	}

	goDelay := goBlockProfile(t, bp)
	for _, want := range truth.Blocks {
		fn := "main." + want.Func
		got := by[fn]
		if got == nil {
			t.Errorf("%s: no goroutine samples", fn)
			continue
		}
		testutil.Near(t, float64(got.blocked+got.runq)/1e9, want.Seconds, 0.05, fn+" parked seconds")
		if len(got.reasons) != 1 || !got.reasons[want.Reason] {
			t.Errorf("%s: wait reasons %v, want only %q", fn, got.reasons, want.Reason)
		}
		if want.Target != "" && (len(got.targets) != 1 || !got.targets[want.Target]) {
			t.Errorf("%s: targets %v, want %q", fn, got.targets, want.Target)
		}
		switch want.Reason {
		case "chan receive", "select", "sync.Mutex.Lock":
			testutil.Near(t, float64(got.blocked)/1e9, goDelay[fn], 0.05, fn+" blocked vs Go's block profile")
		case "sleep", "IO wait":
			if goDelay[fn] > 0.01*want.Seconds {
				t.Errorf("%s: Go's block profile has %.3fs of it; it was expected to lack it", fn, goDelay[fn])
			}
		}
	}
}

// goBlockProfile sums a Go block profile's delay (seconds) by the
// innermost main.* function of each stack.
func goBlockProfile(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bp, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	di := -1
	for i, st := range bp.SampleType {
		if st.Type == "delay" {
			di = i
		}
	}
	if di < 0 {
		t.Fatalf("block profile has no delay: %v", bp.SampleType)
	}
	out := map[string]float64{}
	for _, s := range bp.Sample {
		if fn := innermostMain(stackNames(s)); fn != "" {
			out[fn] += float64(s.Value[di]) / 1e9
		}
	}
	return out
}

// Without --goroutines nothing of it shows: no goroutine samples, no
// goroutine labels, only today's thread samples.
func TestRecordGoroutinesOff(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGoToolchain(t, "goparks", "")
	_, p, _ := profileWorkload(t, bin, []string{"-d", "500ms"}, "-q", "--idle")
	for _, s := range p.Sample {
		if label(s, "kind") == "goroutine" || label(s, "goid") != "" || label(s, "wait_reason") != "" {
			t.Fatalf("goroutine sample without --goroutines: %v %v", s.Label, stackNames(s))
		}
	}
}
