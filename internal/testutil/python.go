package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// Python is a CPython interpreter tests run against.
type Python struct {
	Name string // "debian-3.11", "pyenv-3.12.1"
	Path string
}

// Pythons lists the interpreters the Python tests cover: Debian's
// python3.11 (stripped, non-PIE) and pyenv builds (shared libpython) of
// 3.11, 3.12 and 3.13. Most machines have only some; RequirePython skips
// the others.
func Pythons() []Python {
	home, _ := os.UserHomeDir()
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		root = filepath.Join(home, ".pyenv")
	}
	out := []Python{{"debian-3.11", "/usr/bin/python3.11"}}
	for _, v := range []struct{ full, minor string }{{"3.11.7", "3.11"}, {"3.12.1", "3.12"}, {"3.13.0", "3.13"}} {
		out = append(out, Python{"pyenv-" + v.full, filepath.Join(root, "versions", v.full, "bin", "python"+v.minor)})
	}
	return out
}

// RequirePython skips the test when py is not installed.
func RequirePython(t testing.TB, py Python) {
	t.Helper()
	if _, err := os.Stat(py.Path); err != nil {
		t.Skipf("%s (%s) not installed", py.Name, py.Path)
	}
}
