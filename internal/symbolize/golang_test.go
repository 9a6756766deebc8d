package symbolize

import (
	"strconv"
	"strings"
	"testing"
)

// TestGoProcess compares what we resolve for PCs of a live Go program with
// what its own runtime said about them.
func TestGoProcess(t *testing.T) {
	normal, stripped := buildGo(t)
	for _, bin := range []string{normal, stripped} {
		name := "normal"
		if bin == stripped {
			name = "stripped"
		}
		t.Run(name, func(t *testing.T) {
			fx := start(t, bin)
			// Parse "pc X" followed by its "frame FUNC FILE LINE" lines.
			type oracle struct {
				pc     uint64
				frames []wantFrame
				files  []string
			}
			var want []*oracle
			for _, l := range fx.lines {
				f := strings.Fields(l)
				switch {
				case len(f) == 2 && f[0] == "pc":
					pc, err := strconv.ParseUint(f[1], 16, 64)
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, &oracle{pc: pc})
				case len(f) == 4 && f[0] == "frame" && len(want) > 0:
					line, _ := strconv.Atoi(f[3])
					o := want[len(want)-1]
					o.frames = append(o.frames, wantFrame{f[1], baseName(f[2]), line})
					o.files = append(o.files, f[2])
				}
			}
			if len(want) != 2 || len(want[1].frames) != 2 {
				t.Fatalf("fixture output unexpected: %q", fx.lines)
			}
			s := New(Options{})
			defer s.Close()
			p, err := s.Attach(fx.pid())
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range want {
				loc := p.Locations([]uint64{w.pc})[0]
				checkFrames(t, "pc "+strconv.FormatUint(w.pc, 16), loc.Frames, w.frames...)
				for i, f := range loc.Frames {
					if i < len(w.files) && f.File != w.files[i] {
						t.Errorf("frame %d file %q, want %q", i, f.File, w.files[i])
					}
				}
				if m := loc.Mapping; m == nil || m.File != bin || !m.HasFunctions || !m.HasLineNumbers {
					t.Errorf("mapping %+v", m)
				}
			}
			if m := p.Main(); m == nil || m.BuildID == "" {
				t.Errorf("main mapping %+v, want a build ID", m)
			}
		})
	}
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
