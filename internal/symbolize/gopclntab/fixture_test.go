package gopclntab

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// fixtureSrc is a program whose record() is reached through two inlined
// calls (leaf inside mid inside outer). It prints the pcs from
// runtime.Callers and the runtime's own symbolization of them, which is
// the ground truth Lookup is checked against.
const fixtureSrc = `package main

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
)

var sink int

func leaf(x int) int {
	if x == 7 {
		record()
	}
	return x*3 + 1
}

func mid(x int) int {
	return leaf(x) + 2
}

//go:noinline
func outer(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += mid(i)
	}
	return s
}

//go:noinline
func record() {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(2, pcs)
	for _, pc := range pcs[:n] {
		fmt.Printf("PC %x\n", pc)
	}
	fr := runtime.CallersFrames(pcs[:n])
	for {
		f, more := fr.Next()
		fmt.Printf("F %s\t%s\t%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
}

func main() {
	fmt.Printf("ENTRY %x\n", reflect.ValueOf(outer).Pointer())
	sink = outer(10)
	fmt.Fprintln(os.Stderr, sink)
}
`

// srcLine returns the 1-based line of the first line of fixtureSrc
// starting with prefix.
func srcLine(t testing.TB, prefix string) int {
	for i, l := range strings.Split(fixtureSrc, "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line %q in fixture", prefix)
	return 0
}

func goTool(t testing.TB) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skip("go toolchain not available")
	}
	return p
}

// writeFixture lays out the fixture module in dir.
func writeFixture(t testing.TB, dir string) {
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fx\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(fixtureSrc), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildFixture builds the fixture in dir with extra go build args.
func buildFixture(t testing.TB, dir, out string, cgo bool, args ...string) string {
	bin := filepath.Join(dir, out)
	cmd := exec.Command(goTool(t), append(append([]string{"build", "-o", bin}, args...), ".")...)
	cmd.Dir = dir
	cgoEnv := "CGO_ENABLED=0"
	if cgo {
		cgoEnv = "CGO_ENABLED=1"
	}
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", cgoEnv)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	return bin
}

// runResult is what the fixture printed about itself.
type runResult struct {
	outerEntry uint64
	pcs        []uint64
	frames     []Frame // Function, File, Line only
}

func runFixture(t testing.TB, bin string) runResult {
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	var r runResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "ENTRY "):
			r.outerEntry, _ = strconv.ParseUint(l[6:], 16, 64)
		case strings.HasPrefix(l, "PC "):
			v, _ := strconv.ParseUint(l[3:], 16, 64)
			r.pcs = append(r.pcs, v)
		case strings.HasPrefix(l, "F "):
			p := strings.Split(l[2:], "\t")
			if len(p) != 3 {
				t.Fatalf("bad fixture line %q", l)
			}
			n, _ := strconv.Atoi(p[2])
			r.frames = append(r.frames, Frame{Function: p[0], File: p[1], Line: n})
		}
	}
	if r.outerEntry == 0 || len(r.pcs) == 0 || len(r.pcs) != len(r.frames) {
		t.Fatalf("unexpected fixture output:\n%s", out)
	}
	return r
}

func openTable(t testing.TB, path string) (*Table, *elf.File) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tb, err := Open(f)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return tb, f
}

// funcEntry finds a function's entry by name by walking the table.
func funcEntry(tb *Table, name string) (uint64, bool) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for i := 0; i < tb.h.nfunc; i++ {
		rf, ok := tb.readFunc(i)
		if ok && tb.funcName(rf.nameOff) == name {
			return rf.entry, true
		}
	}
	return 0, false
}

func frameKey(f Frame) Frame { return Frame{Function: f.Function, File: f.File, Line: f.Line} }
