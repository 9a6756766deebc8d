package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"blockprof/internal/testutil"
)

// A C program whose blocking functions call Debian's libc (no frame
// pointers), built with and without frame pointers of its own: with
// .eh_frame unwinding, both show block_here and reader_thread with their
// callers out to main and the thread's start, times within 5 %; with frame
// pointers only (--unwind=false), the walk through libc loses them, which
// is what this test exists to catch.
func TestRecordUnwindWithoutFramePointers(t *testing.T) {
	testutil.RequireRoot(t)
	src := filepath.Join(testutil.RepoRoot(t), "testdata/workloads/cnofp/cnofp.c")
	want := map[string][]string{
		"block_here":    {"clock_nanosleep", "block_here", "main", "__libc_start_main"},
		"reader_thread": {"read", "reader_thread", "start_thread"},
	}
	for _, build := range []struct{ name, flag string }{
		{"omit-frame-pointer", "-fomit-frame-pointer"},
		{"frame-pointer", "-fno-omit-frame-pointer"},
	} {
		t.Run(build.name, func(t *testing.T) {
			bin := testutil.BuildC(t, src, "-O2", "-g", "-pthread", build.flag)
			truth, p, _ := profileWorkload(t, bin, nil, "-q")
			testutil.CheckTruth(t, truth, map[string]int{"block_here": 1, "reader_thread": 1}, nil)
			for _, b := range truth.Blocks {
				got, stack := offCPU(t, p, int64(b.TID), b.Func)
				t.Logf("%s: profile %.4fs, workload %.4fs; stack %v", b.Func, got, b.Seconds, stack)
				if !testutil.Near(t, got, b.Seconds, 0.05, b.Func+" off-CPU seconds") {
					dumpThread(t, p, int64(b.TID))
				}
				last := -1
				for _, fn := range want[b.Func] {
					i := -1
					for j, f := range stack {
						if strings.Contains(f, fn) && j > last {
							i = j
							break
						}
					}
					if i < 0 {
						t.Errorf("%s: %s missing (or out of order) in %v", b.Func, fn, stack)
						break
					}
					last = i
				}
			}
		})
	}
	t.Run("frame-pointers-only", func(t *testing.T) {
		bin := testutil.BuildC(t, src, "-O2", "-g", "-pthread", "-fomit-frame-pointer")
		truth, p, _ := profileWorkload(t, bin, nil, "-q", "--unwind=false")
		b := testutil.TruthBlock(t, truth, "block_here")
		// The sleeps are in the profile: what is missing is the frame.
		slept := timeWhere(t, p, int64(b.TID), func(s *profile.Sample) bool { return label(s, "syscall") == "clock_nanosleep" })
		testutil.Near(t, slept, b.Seconds, 0.05, "main thread's clock_nanosleep seconds")
		if got, stack := offCPU(t, p, int64(b.TID), "block_here"); got > 0 {
			t.Errorf("frame pointers alone found block_here through libc (%.4fs): %v; the test cannot tell", got, stack)
		}
	})
}

// checkOrder: each of fns is on the stack, leaf to root in this order.
func checkOrder(t *testing.T, what string, stack []string, fns ...string) {
	t.Helper()
	last := -1
	for _, fn := range fns {
		i := -1
		for j := last + 1; j < len(stack); j++ {
			if strings.Contains(stack[j], fn) {
				i = j
				break
			}
		}
		if i < 0 {
			t.Errorf("%s: %s missing (or out of order) in %v", what, fn, stack)
			return
		}
		last = i
	}
}

// C++ and Rust without frame pointers: demangled names at the right depth,
// times within 5 %.
func TestRecordUnwindCXXAndRust(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("c++", func(t *testing.T) {
		bin := testutil.BuildCXX(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/cxxnofp/cxxnofp.cc"), "-O2", "-fomit-frame-pointer")
		truth, p, _ := profileWorkload(t, bin, nil, "-q")
		testutil.CheckTruth(t, truth, map[string]int{"blk::Worker::nap": 1, "blk::Worker::wait_for_lock": 1}, nil)
		for _, b := range truth.Blocks {
			// The workload times its blocking call only (wait_for_lock also
			// naps before each lock): count that syscall's samples.
			var stack []string
			got := timeWhere(t, p, int64(b.TID), func(s *profile.Sample) bool {
				st := stackNames(s)
				if label(s, "syscall") != b.Syscall || !hasFrame(st, b.Func) {
					return false
				}
				stack = st
				return true
			})
			t.Logf("%s: profile %.4fs, workload %.4fs; stack %v", b.Func, got, b.Seconds, stack)
			testutil.Near(t, got, b.Seconds, 0.05, b.Func+" off-CPU seconds")
			switch b.Func {
			case "blk::Worker::nap":
				checkOrder(t, b.Func, stack, "clock_nanosleep", "blk::Worker::nap", "main", "__libc_start_main")
			case "blk::Worker::wait_for_lock":
				checkOrder(t, b.Func, stack, "pthread_mutex_lock", "blk::Worker::wait_for_lock", "start_thread")
			}
		}
	})
	t.Run("rust", func(t *testing.T) {
		bin := testutil.BuildRust(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/rustnofp/rustnofp.rs"), "-O", "-C", "force-frame-pointers=no")
		truth, p, _ := profileWorkload(t, bin, nil, "-q")
		testutil.CheckTruth(t, truth, map[string]int{"rustnofp::block_here": 1}, nil)
		b := testutil.TruthBlock(t, truth, "rustnofp::block_here")
		got, stack := offCPU(t, p, int64(b.TID), b.Func)
		t.Logf("%s: profile %.4fs, workload %.4fs; stack %v", b.Func, got, b.Seconds, stack)
		testutil.Near(t, got, b.Seconds, 0.05, b.Func+" off-CPU seconds")
		checkOrder(t, b.Func, stack, "clock_nanosleep", "std::thread::", "rustnofp::block_here", "rustnofp::main", "main")
	})
}

// A Debian-packaged server without frame pointers: redis-server with
// appendfsync always under redis-benchmark. Its fsyncs (fdatasync) must
// show the AOF file and the stack up through Redis' own functions.
func TestRecordUnwindRedis(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "redis-server")
	testutil.RequireTool(t, "redis-benchmark")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	dir := t.TempDir()
	srv := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--loglevel", "warning")
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("redis-server never listened: %s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := startRecord(t, "-q", "-d", "2s", "-p", fmt.Sprint(srv.Process.Pid))
	if out, err := exec.Command("redis-benchmark", "-p", port, "-t", "set", "-n", "2000", "-c", "4", "-q").CombinedOutput(); err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	p := r.wait(t)
	var syncs float64
	var stack []string
	for _, s := range p.Sample {
		if sc := label(s, "syscall"); sc != "fdatasync" && sc != "fsync" {
			continue
		}
		if !strings.Contains(label(s, "target"), "appendonly") {
			t.Errorf("fsync on %q, want the AOF file", label(s, "target"))
		}
		syncs += float64(s.Value[0])
		if st := stackNames(s); hasFrame(st, "flushAppendOnlyFile") && stack == nil {
			stack = st
		}
	}
	t.Logf("%v fsyncs; stack %v", syncs, stack)
	if syncs < 100 {
		t.Fatalf("only %v fsyncs recorded for 2000 SETs with appendfsync always", syncs)
	}
	checkOrder(t, "redis fsync", stack, "fdatasync", "flushAppendOnlyFile", "beforeSleep", "aeMain", "main")
}

// Debian's stripped, non-PIE python3.11 sleeping, recorded without the
// Python walker: the native stack runs from the kernel through libc into
// the interpreter (_PyEval_EvalFrameDefault, in its dynamic symbols) and
// out to Py_BytesMain and _start.
func TestRecordUnwindDebianPython(t *testing.T) {
	testutil.RequireRoot(t)
	py := testutil.Pythons()[0]
	testutil.RequirePython(t, py)
	script := pyWorkload(t, "sleep.py")
	truth, p, _ := profileWorkload(t, py.Path, []string{script, "5"}, "-q", "--no-python")
	b := testutil.TruthBlock(t, truth, "blocker")
	got, stack := offCPU(t, p, int64(b.TID), "_PyEval_EvalFrameDefault")
	t.Logf("stack: %v", stack)
	testutil.Near(t, got, b.Seconds, 0.05, "interpreter thread off-CPU seconds")
	checkOrder(t, "python3.11", stack, "clock_nanosleep", "_PyEval_EvalFrameDefault", "Py_BytesMain", "_start")
}
