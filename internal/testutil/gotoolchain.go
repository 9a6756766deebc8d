package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildGoToolchain builds the self-contained Go workload in pkgDir (a
// path, or a name under testdata/workloads: one package importing only the
// standard library) with Go toolchain version (e.g. "go1.21.13", fetched
// through GOTOOLCHAIN as needed; "" for the go at hand) and -ldflags. It
// builds from a copy with its own go.mod saying go 1.21, so old toolchains
// accept it. A binary is built once per test process for each directory,
// version and flags; a toolchain that cannot be had skips the test (and
// fails it under CI).
func BuildGoToolchain(t testing.TB, pkgDir, version string, ldflags ...string) string {
	t.Helper()
	dir := WorkloadDir(t, pkgDir)
	key := "toolchain\x00" + dir + "\x00" + version + "\x00" + strings.Join(ldflags, " ")
	v, _ := builds.LoadOrStore(key, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		cache, err := buildCacheDir()
		if err != nil {
			r.err = err
			return
		}
		sum := sha256.Sum256([]byte(key))
		name := filepath.Base(dir) + "-" + version + "-" + hex.EncodeToString(sum[:6])
		src := filepath.Join(cache, name+".src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			r.err = err
			return
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				r.err = err
				return
			}
			if err := os.WriteFile(filepath.Join(src, filepath.Base(f)), data, 0o644); err != nil {
				r.err = err
				return
			}
		}
		mod := fmt.Sprintf("module %s\n\ngo 1.21\n", filepath.Base(dir))
		if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(mod), 0o644); err != nil {
			r.err = err
			return
		}
		r.path = filepath.Join(cache, name)
		cmd := exec.Command("go", "build", "-o", r.path, "-ldflags="+strings.Join(ldflags, " "), ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if version != "" {
			cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+version)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("GOTOOLCHAIN=%s go build in %s: %v\n%s", version, src, err, out)
		}
	})
	if r.err != nil {
		if os.Getenv("CI") == "" && strings.Contains(r.err.Error(), "download") {
			t.Skipf("toolchain %s unavailable: %v", version, r.err)
		}
		t.Fatal(r.err)
	}
	return r.path
}
