package attach

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"blockprof/internal/python"
	"blockprof/internal/testutil"
)

// The kernel's frame walker on a live interpreter: a thread in time.sleep
// inside blocker() yields blocker <- main <- <module>, with the line of
// the sleep.
func TestSessionPython(t *testing.T) {
	testutil.RequireRoot(t)
	for _, py := range testutil.Pythons() {
		t.Run(py.Name, func(t *testing.T) {
			testutil.RequirePython(t, py)
			testSessionPython(t, py.Path)
		})
	}
}

func testSessionPython(t *testing.T, py string) {
	script := "import sys, time\n" +
		"def blocker():\n" +
		"    for _ in range(5):\n" +
		"        time.sleep(0.05)\n" + // line 4
		"def main():\n" +
		"    print('ready', flush=True)\n" +
		"    sys.stdin.readline()\n" +
		"    blocker()\n" + // line 8
		"    sys.stdin.readline()\n" +
		"main()\n"
	cmd := exec.Command(py, "-c", script)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	bufio.NewReader(stdout).ReadString('\n')
	pid := cmd.Process.Pid
	tg, err := python.Detect(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	s, err := Open(Options{PIDs: []int{pid}, Python: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddPython(uint32(pid), tg); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	time.Sleep(400 * time.Millisecond)
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Drain()
	if err != nil {
		t.Fatal(err)
	}
	var found time.Duration
	for _, r := range recs {
		if r.Python == nil {
			continue
		}
		var names []string
		for _, f := range r.Python.Frames {
			fr, err := tg.Resolve(f.Code, f.Instr)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, fmt.Sprintf("%s:%d", fr.Function, fr.Line))
		}
		got := strings.Join(names, " <- ")
		t.Logf("%v x%d: %s", r.Blocked, r.Count, got)
		if got == "blocker:4 <- main:8 <- <module>:10" {
			found += r.Blocked
		}
	}
	drops, _ := s.Drops()
	t.Logf("drops %v", drops)
	if found < 200*time.Millisecond {
		t.Errorf("blocker:4 <- main:8 <- <module>:10 blocked %v, want about 250ms", found)
	}
}
