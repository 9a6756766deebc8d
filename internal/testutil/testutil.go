// Package testutil runs the workloads in testdata/workloads for tests and
// benchmarks: it builds them, drives their ready/go/truth protocol, and
// compares what a profiler saw with what the workload measured itself.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// RequireRoot skips a test that loads BPF when not root; under CI (env CI
// set) it fails instead, so a misconfigured CI cannot pass by skipping.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("needs root (loads BPF); CI must run as root")
	}
	t.Skip("needs root (loads BPF): run 'sudo go test ./...'")
}

// RepoRoot is the directory of go.mod, found by walking up from the test's
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// WorkloadDir resolves a workload given by name ("goblock") or by path.
func WorkloadDir(t testing.TB, nameOrPath string) string {
	t.Helper()
	if filepath.IsAbs(nameOrPath) {
		return nameOrPath
	}
	if _, err := os.Stat(nameOrPath); err == nil {
		abs, err := filepath.Abs(nameOrPath)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return filepath.Join(RepoRoot(t), "testdata", "workloads", nameOrPath)
}

// BuildGo builds the Go workload in pkgDir (a path, or a name under
// testdata/workloads) with the given -ldflags and returns the binary.
// A binary is built once per test process for each directory and flags.
func BuildGo(t testing.TB, pkgDir string, ldflags ...string) string {
	t.Helper()
	path, err := TryBuildGo(WorkloadDir(t, pkgDir), ldflags...)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TryBuildGo is BuildGo for an absolute package directory, returning the
// build error instead of failing (a benchmark skips on it).
func TryBuildGo(dir string, ldflags ...string) (string, error) {
	args := []string{"build", "-o", "", "-ldflags=" + strings.Join(ldflags, " "), "."}
	return build(filepath.Base(dir), dir, args, 2, "go")
}

// BuildC compiles the single C file src (a path, or "name/name.c" under
// testdata/workloads) with gcc -pthread -g and cflags, once per test
// process for each file and flags.
func BuildC(t testing.TB, src string, cflags ...string) string {
	t.Helper()
	return buildSource(t, "gcc", ".c", src, cflags)
}

// BuildCXX compiles the single C++ file src with g++ -pthread -g and
// flags; it skips the test when g++ is missing (and fails under CI, which
// installs it).
func BuildCXX(t testing.TB, src string, flags ...string) string {
	t.Helper()
	RequireTool(t, "g++")
	return buildSource(t, "g++", ".cc", src, flags)
}

// buildSource compiles one C or C++ file with -pthread -g -Wall and flags.
func buildSource(t testing.TB, compiler, ext, src string, flags []string) string {
	t.Helper()
	src = WorkloadDir(t, src)
	args := append([]string{"-pthread", "-g", "-Wall"}, flags...)
	args = append(args, "-o", "", src)
	path, err := build(strings.TrimSuffix(filepath.Base(src), ext), filepath.Dir(src), args, len(args)-2, compiler)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// BuildRust compiles the single Rust file src with rustc and flags; it
// skips the test when no Rust toolchain is at hand (CI has none).
func BuildRust(t testing.TB, src string, flags ...string) string {
	t.Helper()
	if _, err := exec.LookPath("rustc"); err != nil {
		t.Skip("no rustc: the Rust case needs a Rust toolchain")
	}
	src = WorkloadDir(t, src)
	args := append([]string{"-g", "--edition", "2021"}, flags...)
	args = append(args, "-o", "", src)
	path, err := build(strings.TrimSuffix(filepath.Base(src), ".rs"), filepath.Dir(src), args, len(args)-2, "rustc")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// RequireTool skips a test whose tool is not installed; under CI, which
// installs every tool the tests use, it fails instead.
func RequireTool(t testing.TB, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; CI must install it (.ci/run)", tool)
	}
	t.Skipf("%s is not installed", tool)
}

var (
	builds   sync.Map // cache key -> *buildResult
	cacheMu  sync.Mutex
	cacheDir string
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// build runs tool with args (args[outArg] is replaced by the output path)
// in dir, once per process for the same tool, dir and args.
func build(name, dir string, args []string, outArg int, tool string) (string, error) {
	key := tool + "\x00" + dir + "\x00" + strings.Join(args, "\x00")
	v, _ := builds.LoadOrStore(key, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		cache, err := buildCacheDir()
		if err != nil {
			r.err = err
			return
		}
		sum := sha256.Sum256([]byte(key))
		r.path = filepath.Join(cache, name+"-"+hex.EncodeToString(sum[:6]))
		args := append([]string(nil), args...)
		args[outArg] = r.path
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
		}
	})
	return r.path, r.err
}

// buildCacheDir is one directory per test process, so cached binaries
// outlive the test that built them (a t.TempDir would not). Directories
// left by earlier test processes that have exited are removed here.
func buildCacheDir() (string, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if cacheDir != "" {
		return cacheDir, nil
	}
	const prefix = "blockprof-workloads-"
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, d := range old {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", prefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	cacheDir = dir
	return dir, nil
}

// Near fails the test unless got is within tol (relative, 0.05 = 5 %) of
// want, and logs both values and the error either way. want is a time or
// count a workload measured: it must be positive, or a missing truth
// (zero) would pass against a missing profile entry (zero).
func Near(t testing.TB, got, want, tol float64, what string) bool {
	t.Helper()
	if !(want > 0) || math.IsInf(want, 0) {
		t.Errorf("%s: got %.6g, want %.6g: nothing measured to compare with", what, got, want)
		return false
	}
	rel := math.Abs(got-want) / want
	if rel > tol || math.IsNaN(got) {
		t.Errorf("%s: got %.6g, want %.6g: error %.2f%% > %.2f%%", what, got, want, 100*rel, 100*tol)
		return false
	}
	t.Logf("%s: got %.6g, want %.6g: error %.2f%% (limit %.2f%%)", what, got, want, 100*rel, 100*tol)
	return true
}
