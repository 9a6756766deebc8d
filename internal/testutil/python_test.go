package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// fakePyenv makes versions/NAME/bin/pythonMINOR for each NAME; a name
// ending in "/" is an empty directory, one starting with "file:" a plain
// file.
func fakePyenv(t *testing.T, names ...string) string {
	t.Helper()
	versions := filepath.Join(t.TempDir(), "versions")
	for _, name := range names {
		var err error
		switch {
		case name[len(name)-1] == '/':
			err = os.MkdirAll(filepath.Join(versions, name), 0o755)
		case len(name) > 5 && name[:5] == "file:":
			if err = os.MkdirAll(versions, 0o755); err == nil {
				err = os.WriteFile(filepath.Join(versions, name[5:]), nil, 0o644)
			}
		default:
			m := cpythonVersion.FindStringSubmatch(name)
			minor := "3.x"
			if m != nil {
				minor = "3." + m[1]
			}
			bin := filepath.Join(versions, name, "bin")
			if err = os.MkdirAll(bin, 0o755); err == nil {
				err = os.WriteFile(filepath.Join(bin, "python"+minor), nil, 0o755)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return versions
}

func TestPyenvPython(t *testing.T) {
	versions := fakePyenv(t,
		"3.11.2", "3.11.10", "3.11.9", // 10 is the highest, as a number
		"3.12.1", "3.12.4t", "3.12.5rc1", "3.12-dev", "3.12/", "3.12.7/", // only 3.12.1 is a release with an interpreter
		"3.13.0t", "pypy3.13-7.3.17", "file:3.13.9", "miniconda3-3.13.0", // no CPython 3.13 at all
		"2.7.18", "3.10.13", "3.14.0",
	)
	for minor, want := range map[string]string{
		"3.11": "3.11.10",
		"3.12": "3.12.1",
		"3.13": "",
		"3.10": "3.10.13",
		"3.1":  "",
	} {
		py := pyenvPython(versions, minor)
		wantPy := Python{Name: "pyenv-" + minor}
		if want != "" {
			wantPy = Python{"pyenv-" + want, filepath.Join(versions, want, "bin", "python"+minor)}
		}
		if py != wantPy {
			t.Errorf("pyenvPython(%s) = %+v, want %+v", minor, py, wantPy)
		}
	}
	if py := pyenvPython(filepath.Join(t.TempDir(), "none"), "3.12"); py != (Python{Name: "pyenv-3.12"}) {
		t.Errorf("no versions directory: %+v", py)
	}
}

func TestPythonsFromPyenvRoot(t *testing.T) {
	versions := fakePyenv(t, "3.11.4", "3.12.8", "3.12.10", "3.13.1")
	t.Setenv("PYENV_ROOT", filepath.Dir(versions))
	got := Pythons()
	want := []Python{
		{"debian-3.11", "/usr/bin/python3.11"},
		{"pyenv-3.11.4", filepath.Join(versions, "3.11.4/bin/python3.11")},
		{"pyenv-3.12.10", filepath.Join(versions, "3.12.10/bin/python3.12")},
		{"pyenv-3.13.1", filepath.Join(versions, "3.13.1/bin/python3.13")},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Pythons() = %v\nwant %v", got, want)
	}
}

// outcome is a testing.TB that records a skip or a failure; Skip and
// Fatal end the goroutine, as they do in a test.
type outcome struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (o *outcome) Helper()                  {}
func (o *outcome) Skip(args ...any)         { o.end(&o.skipped, fmt.Sprint(args...)) }
func (o *outcome) Skipf(f string, a ...any) { o.end(&o.skipped, fmt.Sprintf(f, a...)) }
func (o *outcome) Fatal(args ...any)        { o.end(&o.failed, fmt.Sprint(args...)) }
func (o *outcome) Fatalf(f string, a ...any) {
	o.end(&o.failed, fmt.Sprintf(f, a...))
}

func (o *outcome) end(flag *bool, msg string) {
	*flag, o.msg = true, msg
	runtime.Goexit()
}

func runTB(f func(testing.TB)) *outcome {
	o := &outcome{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(o)
	}()
	<-done
	return o
}

// What a missing tool or interpreter does: skip with a reason, or under
// CI fail, so a CI machine without it cannot pass by skipping.
func TestRequireMissingUnderCI(t *testing.T) {
	missing := map[string]func(testing.TB){
		"tool":         func(tb testing.TB) { RequireTool(tb, "blockprof-no-such-tool") },
		"python path":  func(tb testing.TB) { RequirePython(tb, Python{"pyenv-3.12.1", "/nonexistent/bin/python3.12"}) },
		"pyenv absent": func(tb testing.TB) { RequirePython(tb, Python{Name: "pyenv-3.12"}) },
	}
	for name, f := range missing {
		t.Run(name, func(t *testing.T) {
			t.Setenv("CI", "")
			if o := runTB(f); !o.skipped || o.failed || o.msg == "" {
				t.Errorf("without CI: %+v, want a skip with a reason", o)
			}
			t.Setenv("CI", "true")
			if o := runTB(f); !o.failed || o.skipped {
				t.Errorf("under CI: %+v, want a failure", o)
			}
		})
	}
	present := map[string]func(testing.TB){
		"tool":   func(tb testing.TB) { RequireTool(tb, "go") },
		"python": func(tb testing.TB) { RequirePython(tb, Python{"self", os.Args[0]}) },
	}
	for name, f := range present {
		t.Setenv("CI", "true")
		if o := runTB(f); o.failed || o.skipped {
			t.Errorf("%s present: %+v", name, o)
		}
	}
	if os.Geteuid() == 0 {
		if o := runTB(RequireRoot); o.failed || o.skipped {
			t.Errorf("RequireRoot as root: %+v", o)
		}
	}
}
