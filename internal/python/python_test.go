package python

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// walk does in Go what the BPF walker does, to check the offsets on live
// interpreters without loading BPF.
func walk(t *Target) (map[uint32][]Frame, error) {
	o := &t.Offsets
	out := map[uint32][]Frame{}
	interp, err := t.u64(t.Runtime + uint64(o.InterpretersHead))
	if err != nil {
		return nil, err
	}
	ts, err := t.u64(interp + uint64(o.ThreadsHead))
	if err != nil {
		return nil, err
	}
	for i := 0; ts != 0 && i < 100; i++ {
		var b [4]byte
		if err := t.read(ts+uint64(o.NativeThreadID), b[:]); err != nil {
			return nil, err
		}
		tid := binary.LittleEndian.Uint32(b[:])
		frame, err := t.u64(ts + uint64(o.ThreadFrame))
		if err != nil {
			return nil, err
		}
		if o.CFrameCurrent >= 0 && frame != 0 {
			if frame, err = t.u64(frame + uint64(o.CFrameCurrent)); err != nil {
				return nil, err
			}
		}
		for j := 0; frame != 0 && j < 64; j++ {
			buf := make([]byte, frameReadSize)
			if err := t.read(frame, buf); err != nil {
				return nil, err
			}
			code := binary.LittleEndian.Uint64(buf[o.FrameCode:])
			instr := binary.LittleEndian.Uint64(buf[o.FrameInstr:])
			if o.OwnerCStack == NoOwner || uint32(buf[o.FrameOwner]) != o.OwnerCStack {
				f, err := t.Resolve(code, uint32((instr-code-uint64(o.CodeAdaptive))/2))
				if err != nil {
					return nil, err
				}
				out[tid] = append(out[tid], f)
			}
			frame = binary.LittleEndian.Uint64(buf[o.FramePrevious:])
		}
		if ts, err = t.u64(ts + uint64(o.ThreadNext)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func names(fs []Frame) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%s:%d", f.Function, f.Line))
	}
	return strings.Join(parts, " <- ")
}

func TestLiveInterpreters(t *testing.T) {
	for _, p := range testutil.Pythons() {
		t.Run(p.Name, func(t *testing.T) {
			testutil.RequirePython(t, p)
			py := p.Path
			cmd := exec.Command(py, "testdata/threads.py")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
			if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
				t.Fatalf("script said %q", line)
			}
			tg, err := Detect(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			t.Logf("%s: version %s, _PyRuntime 0x%x in %s", py, tg.Version, tg.Runtime, tg.Path)
			want := []string{
				"Worker.wait_for_io:9 <- Worker.run:12 <- Thread.run:",
				"lock_waiter:16 <- Thread.run:",
				"main:26 <- <module>:29",
			}
			// The main thread may still be between print and readline:
			// walk until every thread is where it parks.
			var stacks map[uint32][]Frame
			var missing []string
			for try := 0; try < 100; try++ {
				if stacks, err = walk(tg); err != nil {
					t.Fatal(err)
				}
				var got []string
				for tid, fs := range stacks {
					got = append(got, fmt.Sprintf("%d: %s", tid, names(fs)))
				}
				missing = nil
				for _, w := range want {
					if !strings.Contains(strings.Join(got, "\n"), w) {
						missing = append(missing, w)
					}
				}
				if len(missing) == 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if len(missing) > 0 {
				t.Errorf("no thread with %q in %v", missing, stacks)
			}
			if fs := stacks[uint32(cmd.Process.Pid)]; len(fs) == 0 || filepath.Base(fs[0].File) != "threads.py" {
				t.Errorf("main thread (native id = pid) not found or wrong file: %v", fs)
			}
		})
	}
}

func TestDetectNotPython(t *testing.T) {
	if _, err := Detect(os.Getpid()); err != ErrNotPython {
		t.Errorf("Detect(self) = %v, want ErrNotPython", err)
	}
}

func TestDetectUnsupported(t *testing.T) {
	py := testutil.PyenvPython("3.10")
	testutil.RequirePython(t, py)
	cmd := exec.Command(py.Path, "-c", "import time; print('ready', flush=True); time.sleep(10)")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	bufio.NewReader(stdout).ReadString('\n')
	_, err := Detect(cmd.Process.Pid)
	if _, ok := err.(*UnsupportedError); !ok {
		t.Fatalf("Detect(3.10) = %v, want *UnsupportedError", err)
	}
	t.Log(err)
}
