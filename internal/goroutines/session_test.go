package goroutines

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"blockprof/internal/symbolize"
	"blockprof/internal/testutil"
)

// goVersions are the toolchains the goroutine tests build with: the
// oldest supported, one before the g layout changed, and the machine's.
var goVersions = []string{"go1.21.13", "go1.22.12", ""}

// TestParksMatchWorkloadClock runs goparks under the goroutine programs
// and checks each function's parked time (park to running again) against
// the workload's own clock, its wait reason, and the IO wait's peer, for
// each Go version, plain and stripped.
func TestParksMatchWorkloadClock(t *testing.T) {
	testutil.RequireRoot(t)
	for _, v := range goVersions {
		for _, build := range []struct {
			name    string
			ldflags []string
		}{{"plain", nil}, {"stripped", []string{"-s", "-w"}}} {
			name := v
			if name == "" {
				name = "local"
			}
			t.Run(name+"/"+build.name, func(t *testing.T) {
				bin := testutil.BuildGoToolchain(t, "goparks", v, build.ldflags...)
				checkParks(t, bin, build.name == "stripped")
			})
		}
	}
}

func checkParks(t *testing.T, bin string, stripped bool) {
	w := testutil.Start(t, bin, "-d", "1s")
	w.Ready(t)
	pid := w.PID()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	b, err := Inspect(exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: offsets from %s: %+v", b.GoVersion, b.Source, b.Offsets)
	if stripped && b.Source == "DWARF" {
		t.Errorf("stripped binary has DWARF?")
	}
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Add(pid, exe, b); err != nil {
		t.Fatal(err)
	}
	proc, err := symbolize.New(symbolize.Options{}).Attach(pid)
	if err != nil {
		t.Fatal(err)
	}
	w.Go(t)
	var parks []Park
	done := time.After(10 * time.Second)
	exited := w.Exited()
	for exited != nil {
		select {
		case <-exited:
			exited = nil
		case <-time.After(300 * time.Millisecond):
			more, err := s.Drain()
			if err != nil {
				t.Fatal(err)
			}
			parks = append(parks, more...)
		case <-done:
			t.Fatal("workload did not finish")
		}
	}
	tr, err := w.Wait(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	more, err := s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	parks = append(parks, more...)
	drops, _ := s.Drops()
	for k, n := range drops {
		if n > 0 {
			t.Errorf("drop %s: %d", k, n)
		}
	}

	type sum struct {
		count             uint64
		blocked, runQueue time.Duration
		reasons           map[string]bool
		targets           map[string]bool
	}
	by := map[string]*sum{}
	for _, p := range parks {
		fn := appFunc(proc, p.Stack)
		x := by[fn]
		if x == nil {
			x = &sum{reasons: map[string]bool{}, targets: map[string]bool{}}
			by[fn] = x
		}
		x.count += p.Count
		x.blocked += p.Blocked
		x.runQueue += p.RunQueue
		x.reasons[p.Reason] = true
		if p.Target != nil {
			x.targets[p.Target.String()] = true
		}
	}
	for _, want := range tr.Blocks {
		got := by["main."+want.Func]
		if got == nil {
			t.Errorf("%s: no parks; got functions %v", want.Func, keys(by))
			continue
		}
		t.Logf("%s: %d parks (workload: %d), blocked %v + run-queue %v, reasons %v, targets %v",
			want.Func, got.count, want.Count, got.blocked, got.runQueue, keys(got.reasons), keys(got.targets))
		testutil.Near(t, (got.blocked + got.runQueue).Seconds(), want.Seconds, 0.05, want.Func+" parked seconds")
		if len(got.reasons) != 1 || !got.reasons[want.Reason] {
			t.Errorf("%s: wait reasons %v, want only %q", want.Func, keys(got.reasons), want.Reason)
		}
		if want.Target != "" && (len(got.targets) != 1 || !got.targets[want.Target]) {
			t.Errorf("%s: targets %v, want %q", want.Func, keys(got.targets), want.Target)
		}
	}
}

// appFunc is the innermost main.* function of a park's stack.
func appFunc(proc *symbolize.Process, stack []uint64) string {
	sites := make([]uint64, len(stack))
	for i, a := range stack {
		sites[i] = a - 1 // return addresses: the call is the instruction before
	}
	for _, loc := range proc.Locations(sites) {
		for _, f := range loc.Frames {
			if strings.HasPrefix(f.Function, "main.") {
				return f.Function
			}
		}
	}
	return "(none)"
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
