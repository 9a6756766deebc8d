package profiles

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"blockprof/internal/symbolize"
)

func writeFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture()
	file := filepath.Join(t.TempDir(), "block.pb.gz")
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePprof(out, f.p, PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return f, file
}

func parseFile(t *testing.T, file string) *profile.Profile {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Fatalf("pprof file is not gzipped")
	}
	pp, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return pp
}

func TestPprofShape(t *testing.T) {
	f, file := writeFixture(t)
	pp := parseFile(t, file)

	var types []string
	for _, st := range pp.SampleType {
		types = append(types, st.Type+"/"+st.Unit)
	}
	if got, want := strings.Join(types, " "), "contentions/count delay/nanoseconds runqueue/nanoseconds"; got != want {
		t.Errorf("sample types %q, want %q", got, want)
	}
	if pp.DefaultSampleType != "delay" {
		t.Errorf("default sample type %q", pp.DefaultSampleType)
	}
	if pp.PeriodType == nil || pp.PeriodType.Type != "contentions" || pp.PeriodType.Unit != "count" || pp.Period != 1 {
		t.Errorf("period %v %d", pp.PeriodType, pp.Period)
	}
	if pp.TimeNanos != f.p.Start.UnixNano() || pp.DurationNanos != f.p.Duration.Nanoseconds() {
		t.Errorf("time %d duration %d", pp.TimeNanos, pp.DurationNanos)
	}
	wantComments := []string{"blockprof -p 100 -p 200 -d 10s", "dropped 12 events: ringbuf_full=10 stack_missing=2"}
	if strings.Join(pp.Comments, "|") != strings.Join(wantComments, "|") {
		t.Errorf("comments %q, want %q", pp.Comments, wantComments)
	}

	if len(pp.Sample) != len(f.p.Samples) {
		t.Fatalf("%d samples, want %d", len(pp.Sample), len(f.p.Samples))
	}
	var sum [3]int64
	for _, s := range pp.Sample {
		for i, v := range s.Value {
			sum[i] += v
		}
	}
	if sum != [3]int64{f.count, f.blocked.Nanoseconds(), f.runq.Nanoseconds()} {
		t.Errorf("value sums %v, want %d %d %d", sum, f.count, f.blocked, f.runq)
	}
}

func TestPprofMappings(t *testing.T) {
	f, file := writeFixture(t)

	// Before serialization: IDs are ours, main executable first.
	built, err := toPprof(f.p)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range built.Mapping {
		if m.ID != uint64(i+1) {
			t.Errorf("mapping %d has ID %d", i, m.ID)
		}
	}
	if built.Mapping[0].File != f.exe.File {
		t.Errorf("mapping 1 is %q, want the main executable", built.Mapping[0].File)
	}

	pp := parseFile(t, file)
	byFile := map[string]*profile.Mapping{}
	for _, m := range pp.Mapping {
		if byFile[m.File] != nil {
			t.Errorf("mapping %q twice", m.File)
		}
		byFile[m.File] = m
	}
	want := []string{f.exe.File, f.libc.File, "[kernel.kallsyms]", "[blockprof]", "[unmapped]", f.goExe.File}
	if len(pp.Mapping) != len(want) {
		t.Errorf("%d mappings, want %d", len(pp.Mapping), len(want))
	}
	for _, file := range want {
		m := byFile[file]
		if m == nil {
			t.Errorf("no mapping %q", file)
			continue
		}
		if strings.HasPrefix(file, "[") != m.Unsymbolizable() {
			t.Errorf("mapping %q: unsymbolizable %v", file, m.Unsymbolizable())
		}
	}
	if m := pp.Mapping[0]; m.ID != 1 || m.File != f.exe.File {
		t.Errorf("first mapping %d %q", m.ID, m.File)
	}
	exe := byFile[f.exe.File]
	if exe.Start != f.exe.Start || exe.Limit != f.exe.Limit || exe.BuildID != f.exe.BuildID ||
		!exe.HasFunctions || !exe.HasFilenames || !exe.HasLineNumbers || !exe.HasInlineFrames {
		t.Errorf("main mapping %+v", exe)
	}
	libc := byFile[f.libc.File]
	if libc.Offset != f.libc.Offset || libc.BuildID != f.libc.BuildID || !libc.HasFunctions ||
		libc.HasFilenames || libc.HasLineNumbers || libc.HasInlineFrames {
		t.Errorf("libc mapping %+v", libc)
	}
	if !byFile["[blockprof]"].HasFunctions {
		t.Errorf("[blockprof] mapping without functions")
	}
}

func TestPprofLocations(t *testing.T) {
	f, file := writeFixture(t)
	pp := parseFile(t, file)

	// Expected dedup: one location per (mapping, address, names), plus the
	// made-up "[unknown stack]".
	type key struct {
		m     *symbolize.Mapping
		addr  uint64
		names string
	}
	locs := map[key]bool{}
	type fkey struct {
		name, file string
		start      int
	}
	funcs := map[fkey]bool{{name: "[unknown stack]"}: true}
	for _, s := range f.p.Samples {
		for _, l := range s.Stack {
			var names []string
			for _, fr := range l.Frames {
				names = append(names, fr.Function)
				funcs[fkey{fr.Function, fr.File, fr.StartLine}] = true
			}
			locs[key{l.Mapping, l.Address, strings.Join(names, ",")}] = true
		}
	}
	if len(pp.Location) != len(locs)+1 {
		t.Errorf("%d locations, want %d", len(pp.Location), len(locs)+1)
	}
	if len(pp.Function) != len(funcs) {
		t.Errorf("%d functions, want %d", len(pp.Function), len(funcs))
	}

	byAddr := map[uint64]*profile.Location{}
	for _, l := range pp.Location {
		byAddr[l.Address] = l
	}
	inl := byAddr[0x401233]
	if inl == nil || len(inl.Line) != 2 || inl.Line[0].Function.Name != "block_read" || inl.Line[0].Line != 31 ||
		inl.Line[1].Function.Name != "handle_conn" || inl.Line[1].Line != 60 ||
		inl.Line[1].Function.Filename != "/src/server/server.c" || inl.Line[1].Function.StartLine != 55 {
		t.Errorf("inlined location %+v", inl)
	}
	if bare := byAddr[0x7f0000029d8f]; bare == nil || len(bare.Line) != 0 || bare.Mapping.File != f.libc.File {
		t.Errorf("frameless libc location %+v", bare)
	}
	if jit := byAddr[0x7fff12345678]; jit == nil || jit.Mapping.File != "[unmapped]" {
		t.Errorf("unmapped location %+v", jit)
	}
	if k := byAddr[0xffffffff81100200]; k == nil || k.Mapping.File != "[kernel.kallsyms]" || k.Line[0].Function.Name != "pipe_read" {
		t.Errorf("kernel location %+v", k)
	}
	if l := byAddr[0x7f0000093a40]; l == nil || l.Line[0].Function.SystemName != "pthread_cond_wait@@GLIBC_2.3.2" {
		t.Errorf("system name lost: %+v", l)
	}

	// Samples: labels, and the empty stack kept with its time.
	var sawEmpty, sawReader bool
	for _, s := range pp.Sample {
		if got := s.NumLabel["pid"]; len(got) != 1 {
			t.Errorf("pid label %v", got)
		}
		if len(s.NumUnit["pid"]) > 1 || len(s.NumUnit["tid"]) > 1 {
			t.Errorf("numeric units %v", s.NumUnit)
		}
		switch s.NumLabel["tid"][0] {
		case 101:
			sawReader = true
			for k, v := range map[string]string{"comm": "server", "thread": "reader", "state": "S",
				"kind": "blocked", "target": "server"} {
				if got := s.Label[k]; len(got) != 1 || got[0] != v {
					t.Errorf("label %s = %q, want %q", k, got, v)
				}
			}
			if _, ok := s.Label["pid"]; ok || s.NumLabel["pid"][0] != 100 {
				t.Errorf("pid %v", s.NumLabel["pid"])
			}
			if s.Location[0].Line[0].Function.Name != "__schedule" {
				t.Errorf("leaf %q", s.Location[0].Line[0].Function.Name)
			}
		case 104:
			sawEmpty = true
			if len(s.Location) != 1 || s.Location[0].Mapping.File != "[blockprof]" ||
				s.Location[0].Line[0].Function.Name != "[unknown stack]" || s.Value[1] != 10e6 {
				t.Errorf("empty-stack sample %+v", s)
			}
		}
	}
	if !sawEmpty || !sawReader {
		t.Errorf("samples missing: empty %v reader %v", sawEmpty, sawReader)
	}
}

func TestPprofNoMainNoSamples(t *testing.T) {
	var buf bytes.Buffer
	if err := WritePprof(&buf, &Profile{}, PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	pp, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(pp.Sample) != 0 || len(pp.SampleType) != 3 {
		t.Errorf("empty profile: %d samples, %d types", len(pp.Sample), len(pp.SampleType))
	}
}

// goToolPprof runs `go tool pprof` with its home, temp and binary search
// directories inside the test's temp space, so it neither writes outside
// nor finds binaries to symbolize with.
func goToolPprof(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	goenv, err := exec.Command(gobin, "env", "GOCACHE", "GOPATH", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	vals := strings.Split(strings.TrimSpace(string(goenv)), "\n")
	if len(vals) != 3 {
		t.Fatalf("go env printed %q", goenv)
	}
	cmd := exec.Command(gobin, append([]string{"tool", "pprof"}, args...)...)
	cmd.Dir = t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "HOME", "PPROF_TMPDIR", "PPROF_BINARY_PATH", "PPROF_TOOLS", "GOCACHE", "GOPATH", "GOMODCACHE":
			continue
		}
		env = append(env, kv)
	}
	// The go command finds its build cache (where pprof is built) through
	// HOME, so pass the caches explicitly.
	cmd.Env = append(env, "HOME="+t.TempDir(), "PPROF_TMPDIR="+t.TempDir(),
		"PPROF_BINARY_PATH="+t.TempDir(), "GOCACHE="+vals[0], "GOPATH="+vals[1], "GOMODCACHE="+vals[2])
	return cmd
}

func TestGoToolPprof(t *testing.T) {
	_, file := writeFixture(t)
	for _, tc := range []struct {
		flag string
		want []string
	}{
		{"-top -nodefraction=0", []string{"Type: delay", "block_read", "handle_conn", "pipe_read", "queue_pop",
			"main.blockRead", "runtime.sysmon", "[unknown stack]"}},
		{"-traces", []string{"File: server", "block_read", "handle_conn", "__GI___libc_read",
			"pipe_read", "[unknown stack]", "comm:  server", "thread:  reader", "pid:  100", "[[unmapped]]"}},
		{"-raw", []string{"PeriodType: contentions count", "Samples:", "contentions/count delay/nanoseconds[dflt] runqueue/nanoseconds",
			"block_read", "handle_conn", "/srv/bin/server", "[kernel.kallsyms]", "[blockprof]", "libc.so.6", "[preempted]", "[unknown stack]",
			"0x7f0000029d8f M=3 \n", "0x401233 M=1 block_read /src/server/io.c:31", "handle_conn /src/server/server.c:60",
			"comm:[server]", "pid:[100]"}},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			cmd := goToolPprof(t, append(strings.Fields(tc.flag), file)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("go tool pprof %s: %v\n%s", tc.flag, err, stderr.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr not empty:\n%s", stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

// TestGoToolPprofWarnsWhenDishonest guards the harness above: a mapping
// that claims no functions makes pprof try (and fail) to symbolize it, and
// that must show on stderr.
func TestGoToolPprofWarnsWhenDishonest(t *testing.T) {
	f := newFixture()
	f.libc.HasFunctions = false
	f.libc.File = "/nonexistent/libc.so.6"
	file := filepath.Join(t.TempDir(), "block.pb.gz")
	var buf bytes.Buffer
	if err := WritePprof(&buf, f.p, PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := goToolPprof(t, "-top", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "libc.so.6") {
		t.Errorf("no symbolization warning for libc: %q", stderr.String())
	}
}

func TestPprofMainIsMostBlockedProcess(t *testing.T) {
	f := newFixture()
	for i := range f.p.Samples {
		if f.p.Samples[i].PID == 200 {
			f.p.Samples[i].Blocked *= 10
		}
	}
	pp, err := toPprof(f.p)
	if err != nil {
		t.Fatal(err)
	}
	if pp.Mapping[0].ID != 1 || pp.Mapping[0].File != f.goExe.File {
		t.Errorf("mapping 1 is %q, want the worker's executable", pp.Mapping[0].File)
	}
}

// In loop mode the file keeps the loop lines of the first screen after the
// command line and the drops, none of them lost.
func TestPprofLoopComments(t *testing.T) {
	p := &Profile{Comments: []string{"blockprof record --loop -p 7"}, Drops: map[string]uint64{"loop_events_lost": 3},
		Stall: 20 * time.Millisecond,
		Loops: []Loop{{PID: 7, TID: 7, Comm: "app", Thread: "app", Wait: "epoll_wait", Iterations: 90,
			Stalls: 4, StallTime: 400 * time.Millisecond, Worst: 150 * time.Millisecond}}}
	var buf bytes.Buffer
	if err := WritePprof(&buf, p, PprofOptions{}); err != nil {
		t.Fatal(err)
	}
	pp, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(pp.Comments, "\n")
	for _, want := range []string{"blockprof record --loop -p 7", "loop_events_lost=3", "a stall is an iteration longer than 20",
		"app 7/7", "stalled 4"} {
		if !strings.Contains(got, want) {
			t.Errorf("comments lack %q:\n%s", want, got)
		}
	}
}
