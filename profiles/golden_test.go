package profiles

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite profiles/testdata/*.golden from the current output")

// The first screen's layout, at 80 and 200 columns, for the service
// fixture (loop mode, Python, Go and C culprits) and the basic fixture:
// compared with testdata/*.golden; `go test ./profiles -run Golden
// -update` rewrites them after a deliberate change.
func TestSummaryGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *Profile
		file string
	}{
		{"service", serviceFixture(), "out/service.pb.gz"},
		{"fixture", newFixture().p, "out/block.pb.gz"},
	} {
		for _, width := range []int{80, 200} {
			name := fmt.Sprintf("%s_%d", tc.name, width)
			t.Run(name, func(t *testing.T) {
				var buf bytes.Buffer
				WriteSummary(&buf, tc.p, SummaryOptions{File: tc.file, Width: width})
				got := buf.String()
				for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
					if n := runes(l); n > width {
						t.Errorf("line of %d columns, want at most %d: %q", n, width, l)
					}
				}
				golden := filepath.Join("testdata", "summary_"+name+".golden")
				if *update {
					if err := os.MkdirAll("testdata", 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("first screen at %d columns differs from %s (-update rewrites it):\n%s\nwant:\n%s",
						width, golden, got, want)
				}
			})
		}
	}
}
