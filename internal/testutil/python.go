package testutil

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Python is a CPython interpreter tests run against.
type Python struct {
	Name string // "debian-3.11", "pyenv-3.12.1"; "pyenv-3.12" when none is installed
	Path string // "" when not installed
}

// Pythons lists the interpreters the Python tests cover: Debian's
// python3.11 (stripped, non-PIE) and pyenv builds (shared libpython) of
// 3.11, 3.12 and 3.13, each the highest patch version installed. A minor
// version pyenv lacks is listed with an empty Path: RequirePython skips
// it, or fails under CI.
func Pythons() []Python {
	out := []Python{{"debian-3.11", "/usr/bin/python3.11"}}
	for _, minor := range []string{"3.11", "3.12", "3.13"} {
		out = append(out, PyenvPython(minor))
	}
	return out
}

// PyenvRoot is $PYENV_ROOT, or ~/.pyenv, pyenv's own default.
func PyenvRoot() string {
	if root := os.Getenv("PYENV_ROOT"); root != "" {
		return root
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

// PyenvPython is the highest installed patch version of CPython minor
// ("3.12") under PyenvRoot()/versions; its Path is "" when there is none.
func PyenvPython(minor string) Python {
	return pyenvPython(filepath.Join(PyenvRoot(), "versions"), minor)
}

// cpythonVersion matches the directories pyenv names after a CPython
// release ("3.12.1"). Anything else is left out: free-threaded builds
// ("3.13.0t"), pre-releases ("3.13.0rc1"), "3.12-dev", PyPy, conda, and
// aliases such as "3.12".
var cpythonVersion = regexp.MustCompile(`^3\.([0-9]+)\.([0-9]+)$`)

// pyenvPython picks, among the directories of versions named
// minor.PATCH that hold bin/pythonMINOR, the one with the highest PATCH
// (compared as a number: 3.11.10 is above 3.11.9).
func pyenvPython(versions, minor string) Python {
	best := Python{Name: "pyenv-" + minor}
	bestPatch := -1
	entries, err := os.ReadDir(versions)
	if err != nil {
		return best
	}
	for _, e := range entries {
		m := cpythonVersion.FindStringSubmatch(e.Name())
		if m == nil || "3."+m[1] != minor {
			continue
		}
		patch, err := strconv.Atoi(m[2])
		if err != nil || patch <= bestPatch {
			continue
		}
		path := filepath.Join(versions, e.Name(), "bin", "python"+minor)
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			continue // not a (complete) installation
		}
		best, bestPatch = Python{"pyenv-" + e.Name(), path}, patch
	}
	return best
}

// RequirePython skips the test when py is not installed; under CI, where
// every interpreter of Pythons is installed, it fails instead.
func RequirePython(t testing.TB, py Python) {
	t.Helper()
	if py.Path != "" {
		if _, err := os.Stat(py.Path); err == nil {
			return
		}
	}
	what := py.Path
	if what == "" {
		what = "no " + strings.TrimPrefix(py.Name, "pyenv-") + ".N under " + filepath.Join(PyenvRoot(), "versions")
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (%s); CI must have it", py.Name, what)
	}
	t.Skipf("%s not installed (%s)", py.Name, what)
}
