package symbolize

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParsePerfMap(t *testing.T) {
	m := parsePerfMap([]byte("1000 100 JS:*hot busy.js:1:17\n" +
		"0x2000 0x10 long Block.work(long)\n" +
		"garbage line\n" +
		"1050 10 JS:^replaced busy.js:9:1\n" +
		"3000 0 empty\n" +
		"4000 10"))
	for _, tc := range []struct {
		a    uint64
		want string
	}{
		{0x1000, "JS:*hot busy.js:1:17"}, {0x10ff, "JS:*hot busy.js:1:17"}, {0x1100, ""},
		{0x1055, "JS:^replaced busy.js:9:1"}, {0x2008, "long Block.work(long)"}, {0x3000, ""}, {0x4000, ""}, {0, ""},
	} {
		if got := m.lookup(tc.a); got != tc.want {
			t.Errorf("lookup(%#x) = %q, want %q", tc.a, got, tc.want)
		}
	}
}

// A perf map older than the process is another process's (a reused PID).
func TestPerfMapFileAge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "perf-1.map")
	if err := os.WriteFile(path, []byte("1000 10 f\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &perfMapFile{path: path, started: time.Now().Add(time.Hour)}
	if m := f.get(); m != nil {
		t.Errorf("stale map used: %+v", m)
	}
	f = &perfMapFile{path: path, started: time.Now().Add(-time.Hour)}
	if m := f.get(); m == nil || m.lookup(0x1004) != "f" {
		t.Errorf("fresh map not used: %+v", m)
	}
	start, err := processStart(filepath.Join("/proc", "self"))
	if err != nil || time.Since(start) < 0 || time.Since(start) > time.Minute {
		t.Errorf("this test process started at %v (%v ago): %v", start, time.Since(start), err)
	}
}

func FuzzParsePerfMap(f *testing.F) {
	f.Add([]byte("1000 100 JS:*hot busy.js:1:17\n0x2000 0x10 x\n"))
	f.Add([]byte("ffffffffffffffff 10 wrap\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := parsePerfMap(data)
		for _, s := range m.syms {
			m.lookup(s.start)
			m.lookup(s.end)
		}
	})
}
