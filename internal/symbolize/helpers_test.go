package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"blockprof/internal/elfinfo"
)

func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func testdata(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// markLine returns the line of "MARK:name" in a testdata source file.
func markLine(t testing.TB, file, mark string) int {
	t.Helper()
	data, err := os.ReadFile(testdata(t, file))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasSuffix(l, "MARK:"+mark) {
			return i + 1
		}
	}
	t.Fatalf("no MARK:%s in %s", mark, file)
	return 0
}

// nmAddr returns the value of symbol name in bin's symbol table.
func nmAddr(t testing.TB, bin, name string) uint64 {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("%s: no symbol %s", bin, name)
	return 0
}

func buildID(t testing.TB, bin string) string {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gnu, _ := elfinfo.BuildIDs(f)
	if gnu == "" {
		t.Fatalf("%s has no build ID", bin)
	}
	return gnu
}

// fixture is a running test program and what it printed about itself.
type fixture struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	vals  map[string]uint64
	lines []string
}

// start runs bin and reads "key 0x..." lines up to "ready".
func start(t testing.TB, bin string, env ...string) *fixture {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{cmd: cmd, stdin: stdin, vals: map[string]uint64{}}
	t.Cleanup(fx.stop)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := sc.Text()
		if l == "ready" {
			return fx
		}
		fx.lines = append(fx.lines, l)
		if k, v, ok := strings.Cut(l, " "); ok {
			if n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64); err == nil {
				fx.vals[k] = n
			}
		}
	}
	t.Fatalf("%s exited before ready: %v", bin, sc.Err())
	return nil
}

func (fx *fixture) pid() int { return fx.cmd.Process.Pid }

func (fx *fixture) stop() {
	if fx.stdin != nil {
		fx.stdin.Close()
		fx.stdin = nil
		fx.cmd.Wait()
	}
}

// cFixtures builds the C fixture variants once per test binary run.
type cBuild struct {
	dir                      string
	pie, nopie, lib, libmain string
	stripped, debugRoot      string // stripped PIE + a Root holding its debug file
	linked, linkedDebug      string // stripped PIE with a .gnu_debuglink
	inline                   string // -O2 -g for inlining
	cxx                      string
}

var (
	cOnce sync.Once
	cBin  *cBuild
	cErr  error
)

func buildC(t testing.TB) *cBuild {
	t.Helper()
	needTools(t, "gcc", "g++", "objcopy", "strip")
	cOnce.Do(func() {
		dir, err := os.MkdirTemp("", "symbolize-fixtures-")
		if err != nil {
			cErr = err
			return
		}
		cBin, cErr = doBuildC(dir)
	})
	if cErr != nil {
		t.Fatal(cErr)
	}
	return cBin
}

func sh(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func doBuildC(dir string) (*cBuild, error) {
	src, _ := filepath.Abs("testdata/fixture.c")
	libsrc, _ := filepath.Abs("testdata/fixturelib.c")
	cxxsrc, _ := filepath.Abs("testdata/fixture.cc")
	b := &cBuild{dir: dir}
	p := func(n string) string { return filepath.Join(dir, n) }
	b.pie, b.nopie, b.inline = p("pie"), p("nopie"), p("inline")
	b.lib, b.libmain = p("libfix.so"), p("libmain")
	b.stripped, b.linked, b.cxx = p("stripped"), p("linked"), p("cxx")
	steps := [][]string{
		{"gcc", "-g", "-O1", "-fPIE", "-pie", "-Wl,--build-id", "-o", b.pie, src},
		{"gcc", "-g", "-O1", "-fno-pie", "-no-pie", "-Wl,--build-id", "-o", b.nopie, src},
		{"gcc", "-g", "-O2", "-Wl,--build-id", "-o", b.inline, src},
		{"gcc", "-g", "-O1", "-fPIC", "-shared", "-Wl,--build-id", "-o", b.lib, libsrc},
		{"gcc", "-g", "-O1", "-DWITH_LIB", "-Wl,--build-id", "-o", b.libmain, src, b.lib, "-Wl,-rpath," + dir},
		{"g++", "-g", "-O1", "-Wl,--build-id", "-o", b.cxx, cxxsrc},
		// Separate debug file found by build ID.
		{"gcc", "-g", "-O1", "-Wl,--build-id", "-o", b.stripped, src},
		{"objcopy", "--only-keep-debug", b.stripped, b.stripped + ".debug"},
		{"strip", "--strip-all", b.stripped},
		// Separate debug file found by .gnu_debuglink in .debug/.
		{"gcc", "-g", "-O1", "-Wl,--build-id=none", "-o", b.linked, src},
		{"objcopy", "--only-keep-debug", b.linked, b.linked + ".debug"},
		{"strip", "--strip-all", b.linked},
		{"objcopy", "--add-gnu-debuglink=" + b.linked + ".debug", b.linked},
	}
	for _, s := range steps {
		if err := sh(dir, s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	// Put the build-ID debug file under a Root of its own.
	b.debugRoot = p("root")
	f, err := elf.Open(b.stripped + ".debug")
	if err != nil {
		return nil, err
	}
	id, _ := elfinfo.BuildIDs(f)
	f.Close()
	if id == "" {
		return nil, fmt.Errorf("no build ID in %s.debug", b.stripped)
	}
	bd := filepath.Join(b.debugRoot, "usr/lib/debug/.build-id", id[:2])
	if err := os.MkdirAll(bd, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(b.stripped+".debug", filepath.Join(bd, id[2:]+".debug")); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p(".debug"), 0o755); err != nil {
		return nil, err
	}
	b.linkedDebug = filepath.Join(dir, ".debug", "linked.debug")
	if err := os.Rename(b.linked+".debug", b.linkedDebug); err != nil {
		return nil, err
	}
	return b, nil
}

var (
	goOnce sync.Once
	goBins [2]string // normal, -s -w
	goErr  error
)

func buildGo(t testing.TB) (normal, stripped string) {
	t.Helper()
	needTools(t, "go")
	goOnce.Do(func() {
		dir, err := os.MkdirTemp("", "symbolize-gofix-")
		if err != nil {
			goErr = err
			return
		}
		src, err := os.ReadFile("testdata/fixture_go.txt")
		if err != nil {
			goErr = err
			return
		}
		files := map[string]string{"main.go": string(src), "go.mod": "module gofix\n\ngo 1.22\n"}
		for n, c := range files {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
				goErr = err
				return
			}
		}
		goBins = [2]string{filepath.Join(dir, "gofix"), filepath.Join(dir, "gofix-stripped")}
		for i, flags := range []string{"", "-s -w"} {
			cmd := exec.Command("go", "build", "-ldflags="+flags, "-o", goBins[i], ".")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				goErr = fmt.Errorf("go build %s: %v\n%s", flags, err, out)
				return
			}
		}
	})
	if goErr != nil {
		t.Fatal(goErr)
	}
	return goBins[0], goBins[1]
}

func frameString(fr []Frame) string {
	var b bytes.Buffer
	for i, f := range fr {
		if i > 0 {
			b.WriteString(" <- ")
		}
		fmt.Fprintf(&b, "%s %s:%d", f.Function, filepath.Base(f.File), f.Line)
	}
	return b.String()
}
