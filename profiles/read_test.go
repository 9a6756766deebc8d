package profiles

import (
	"bytes"
	"strings"
	"testing"
)

func roundTrip(t *testing.T, p *Profile) *Profile {
	t.Helper()
	var buf bytes.Buffer
	if err := WritePprof(&buf, p, PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	back, err := ReadPprof(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// A saved profile reads back into the same first screen: stacks, labels,
// loop values, loop lines and the stall threshold survive the file.
func TestReadPprofSameScreen(t *testing.T) {
	for _, width := range []int{80, 200} {
		want := summary(serviceFixture(), SummaryOptions{Width: width, File: "x.pb.gz"})
		got := summary(roundTrip(t, serviceFixture()), SummaryOptions{Width: width, File: "x.pb.gz"})
		if got != want {
			t.Errorf("width %d: read back:\n%s\nwant:\n%s", width, got, want)
		}
	}
	// The basic fixture: what the file does not carry (which process
	// exited, the syscall table) is all that differs.
	f := newFixture()
	back := roundTrip(t, f.p)
	want := summary(f.p, SummaryOptions{})
	want = strings.Replace(want, "worker (exited)", "worker         ", 1)
	if got := summary(back, SummaryOptions{}); got != want {
		t.Errorf("read back:\n%s\nwant:\n%s", got, want)
	}
	if back.Drops["ringbuf_full"] != 10 || back.Start != f.p.Start || back.Duration != f.p.Duration ||
		len(back.Comments) != 1 || back.Comments[0] != f.p.Comments[0] {
		t.Errorf("drops %v, start %v, duration %v, comments %q", back.Drops, back.Start, back.Duration, back.Comments)
	}
	s := back.Samples[0]
	if s.PID != 100 || s.TID != 101 || s.Comm != "server" || s.Thread != "reader" || s.State != "S" ||
		s.Kind != "blocked" || s.Labels["target"] != "server" || s.Count != 24 {
		t.Errorf("sample 0 read back as %+v", s)
	}
}

// Python's "<module>", renamed so pprof keeps it, reads back as itself.
func TestUnPprofName(t *testing.T) {
	for _, tc := range [][3]string{
		{"sleep.<module>", "/x/sleep.py", "<module>"},
		{"sleep.main", "/x/sleep.py", "sleep.main"},
		{"main.main", "/x/main.go", "main.main"},
	} {
		if got := unPprofName(tc[0], tc[1]); got != tc[2] {
			t.Errorf("unPprofName(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
