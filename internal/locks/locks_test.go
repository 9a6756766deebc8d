package locks

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

func mutexBytes(lock, owner int32, nusers uint32, kind int32) []byte {
	b := make([]byte, mutexSize)
	binary.LittleEndian.PutUint32(b[offLock:], uint32(lock))
	binary.LittleEndian.PutUint32(b[offOwner:], uint32(owner))
	binary.LittleEndian.PutUint32(b[offNusers:], nusers)
	binary.LittleEndian.PutUint32(b[offKind:], uint32(kind))
	return b
}

func TestOwnerOf(t *testing.T) {
	threads := map[int]bool{100: true, 101: true, 102: true}
	isThread := func(tid int) bool { return threads[tid] }
	for _, tc := range []struct {
		name string
		b    []byte
		want int
		ok   bool
	}{
		{"locked with waiters", mutexBytes(2, 101, 1, 0), 101, true},
		{"recursive, robust", mutexBytes(1, 102, 1, 1|16), 102, true},
		{"unlocked", mutexBytes(0, 101, 0, 0), 0, false},
		{"owner is the waiter", mutexBytes(2, 100, 1, 0), 0, false},
		{"owner not a thread of the process", mutexBytes(2, 4242, 1, 0), 0, false},
		{"no users", mutexBytes(2, 101, 0, 0), 0, false},
		{"unknown kind", mutexBytes(2, 101, 1, 7), 0, false},
		// A glibc sem_t: value 0 while waited on, then the private flag.
		{"semaphore", mutexBytes(0, 128, 0, 0), 0, false},
		{"short", make([]byte, 8), 0, false},
	} {
		got, ok := ownerOf(tc.b, 100, isThread)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCycles(t *testing.T) {
	for _, tc := range []struct {
		waits map[int]int
		want  [][]int
	}{
		{map[int]int{1: 2, 2: 1}, [][]int{{1, 2}}},
		{map[int]int{5: 3, 3: 4, 4: 5, 9: 5}, [][]int{{3, 4, 5}}}, // 9 waits on the cycle, not in it
		{map[int]int{1: 2, 2: 3}, nil},                            // a chain
		{map[int]int{7: 8, 8: 7, 1: 2, 2: 1}, [][]int{{1, 2}, {7, 8}}},
		{map[int]int{}, nil},
	} {
		if got := Cycles(tc.waits); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Cycles(%v) = %v, want %v", tc.waits, got, tc.want)
		}
	}
}

// The hung workload's two threads deadlocked on pthread mutexes: each
// one's mutex names the other as holder, read from the live process.
func TestMutexOwnerLive(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, filepath.Join(testutil.RepoRoot(t), "testdata/workloads/hung/hung.c"), "-O2", "-pthread")
	cmd := exec.Command(bin)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 4096)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "lock_ab") {
		t.Fatalf("hung said %q", buf[:n])
	}
	pid := cmd.Process.Pid
	time.Sleep(50 * time.Millisecond)
	// Where each thread waits: /proc's syscall file has the futex word
	// as the first argument.
	waits := map[int]int{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		var tid int
		fmt.Sscan(task.Name(), &tid)
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
		f := strings.Fields(string(b))
		if len(f) < 2 || f[0] != "202" {
			continue
		}
		var addr uint64
		fmt.Sscanf(f[1], "0x%x", &addr)
		if owner, ok := MutexOwner(pid, tid, addr); ok {
			waits[tid] = owner
		}
	}
	cycles := Cycles(waits)
	if len(waits) != 2 || len(cycles) != 1 || len(cycles[0]) != 2 {
		t.Fatalf("holders %v, cycles %v; want the two deadlocked threads in one cycle", waits, cycles)
	}
}
