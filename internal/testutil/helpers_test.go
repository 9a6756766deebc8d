package testutil

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Logf(string, ...any)          {}
func (r *recorder) Errorf(f string, args ...any) { r.errors = append(r.errors, f) }

func TestNear(t *testing.T) {
	for _, tc := range []struct {
		got, want, tol float64
		ok             bool
	}{
		{1.04, 1, 0.05, true},
		{0.96, 1, 0.05, true},
		{1.06, 1, 0.05, false},
		{0.94, 1, 0.05, false},
		{0, 1, 0.5, false},
		{0, 0, 0.05, false}, // nothing measured, nothing seen: not a match
		{1e-9, 0, 0.05, false},
		{-1, -1, 0.05, false},
		{math.NaN(), 1, 0.05, false},
		{1, math.NaN(), 0.05, false},
	} {
		r := &recorder{}
		Near(r, tc.got, tc.want, tc.tol, "x")
		if ok := len(r.errors) == 0; ok != tc.ok {
			t.Errorf("Near(%v, %v, %v) passed=%v, want %v", tc.got, tc.want, tc.tol, ok, tc.ok)
		}
	}
}

func TestParseTIDs(t *testing.T) {
	for line, want := range map[string]map[string]int{
		"ready":                            {},
		"ready reader=12 sleeper=13":       {"reader": 12, "sleeper": 13},
		"ready tids: reader=12 sleeper=13": {"reader": 12, "sleeper": 13},
		"ready a=x b=7":                    {"b": 7},
	} {
		if got := parseTIDs(line); !reflect.DeepEqual(got, want) {
			t.Errorf("parseTIDs(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestReadTruth(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "t.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tr, err := ReadTruth(write(`{"pid":7,"blocks":[{"func":"f","syscall":"read","tid":8,"count":2,"seconds":0.5},{"func":"g","pid":9,"tid":9}],"cpu":[{"func":"spin","tid":8,"seconds":1,"wall":2,"count":4}],"ticks":3}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Truth{PID: 7,
		Blocks: []Block{{Func: "f", Syscall: "read", PID: 7, TID: 8, Count: 2, Seconds: 0.5}, {Func: "g", PID: 9, TID: 9}},
		CPU:    []CPU{{Func: "spin", PID: 7, TID: 8, Seconds: 1, Wall: 2, Count: 4}}, Ticks: 3}
	if !reflect.DeepEqual(tr, want) {
		t.Errorf("got %+v\nwant %+v", tr, want)
	}
	for _, bad := range []string{``, `{"blocks":[]}`, `{"pid":1,`} {
		if _, err := ReadTruth(write(bad)); err == nil {
			t.Errorf("ReadTruth(%q) accepted", bad)
		}
	}
	if _, err := ReadTruth(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no truth") {
		t.Errorf("missing file: %v", err)
	}
}

func TestRoundtripsPerSec(t *testing.T) {
	if v, err := RoundtripsPerSec("roundtrips=10 seconds=1\nroundtrips_per_sec=231199\n"); err != nil || v != 231199 {
		t.Errorf("got %v, %v", v, err)
	}
	if _, err := RoundtripsPerSec("roundtrips=10\n"); err == nil {
		t.Error("accepted output without a rate")
	}
}

// The second build of the same workload and flags is the first binary,
// untouched; other flags make another binary.
func TestBuildCached(t *testing.T) {
	a := BuildC(t, "cblock/cblock.c", "-O0")
	st, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	b := BuildC(t, "cblock/cblock.c", "-O0")
	st2, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || !st.ModTime().Equal(st2.ModTime()) {
		t.Errorf("rebuilt: %s %v, %s %v", a, st.ModTime(), b, st2.ModTime())
	}
	if c := BuildC(t, "cblock/cblock.c", "-O1"); c == a {
		t.Errorf("different flags share a binary: %s", c)
	}
}
