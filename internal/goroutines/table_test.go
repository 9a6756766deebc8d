package goroutines

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"blockprof/internal/testutil"
)

// tableToolchains is one toolchain per row of the tables.
var tableToolchains = map[string]string{
	"go1.21": "go1.21.13", "go1.22": "go1.22.12", "go1.23": "go1.23.12",
	"go1.24": "go1.24.13", "go1.25": "go1.25.8", "go1.26": "",
}

// TestTableMatchesDWARF checks each row of the per-version tables (what
// stripped binaries rely on) against the DWARF of a binary that version
// built, and the wait reason strings against that version's runtime
// source: offsets equal, every waitReason constant's value naming its
// string.
func TestTableMatchesDWARF(t *testing.T) {
	if len(tableToolchains) != len(offsetTable) || len(offsetTable) != len(waitReasonTable) {
		t.Fatalf("tables and toolchains disagree on the versions: %d, %d, %d",
			len(tableToolchains), len(offsetTable), len(waitReasonTable))
	}
	for minor, tc := range tableToolchains {
		t.Run(minor, func(t *testing.T) {
			bin := testutil.BuildGoToolchain(t, "goparks", tc)
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d, err := f.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			off, consts, err := fromDWARF(d)
			if err != nil {
				t.Fatal(err)
			}
			if off != offsetTable[minor] {
				t.Errorf("offsets: DWARF %+v, table %+v", off, offsetTable[minor])
			}
			b, err := Inspect(bin)
			if err != nil {
				t.Fatal(err)
			}
			if minorVersion(b.GoVersion) != minor {
				t.Fatalf("built %s, want %s", b.GoVersion, minor)
			}
			strs := runtimeReasonStrings(t, tc)
			reasons := waitReasonTable[minor]
			if len(consts) != len(reasons) {
				t.Errorf("%d waitReason constants, table has %d", len(consts), len(reasons))
			}
			for name, v := range consts {
				want, ok := strs[name]
				if !ok {
					t.Errorf("%s: no string in the runtime source", name)
					continue
				}
				if v < 0 || int(v) >= len(reasons) || reasons[v] != want {
					t.Errorf("%s = %d: want %q at that index", name, v, want)
				}
			}
		})
	}
}

// runtimeReasonStrings reads waitReasonStrings (constant name -> string)
// from the runtime source of toolchain tc.
func runtimeReasonStrings(t *testing.T, tc string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "env", "GOROOT")
	cmd.Env = os.Environ()
	if tc != "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+tc)
	}
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GOTOOLCHAIN=%s go env GOROOT: %v", tc, err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "src", "runtime", "runtime2.go"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)var waitReasonStrings = \[\.\.\.\]string\{(.*?)\n\}`).FindSubmatch(src)
	if block == nil {
		t.Fatal("no waitReasonStrings in runtime2.go")
	}
	strs := map[string]string{}
	for _, m := range regexp.MustCompile(`(waitReason\w+):\s*"([^"]*)"`).FindAllSubmatch(block[1], -1) {
		strs[string(m[1])] = string(m[2])
	}
	return strs
}
