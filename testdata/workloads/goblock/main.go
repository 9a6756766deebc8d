// goblock blocks OS threads in named Go functions, the case a thread-level
// off-CPU profiler can attribute to Go code:
//
//   - blockRead: raw read(2) on a FIFO that a writer thread feeds one byte
//     every -period (50 ms), -n times;
//   - blockNanosleep: raw nanosleep(2) of -sleep (20 ms), -n times.
//
// Each runs on its own locked OS thread and measures its blocked time with
// the monotonic clock around every syscall. Protocol: "ready reader=TID
// sleeper=TID writer=TID", one line on stdin, run, truth JSON, exit 0.
package main

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"blockprof/testdata/workloads/wl"
)

func main() {
	n := flag.Int("n", 20, "blocking calls per function")
	period := flag.Duration("period", 50*time.Millisecond, "FIFO writer period")
	sleep := flag.Duration("sleep", 20*time.Millisecond, "nanosleep length")
	flag.Parse()

	dir, err := os.MkdirTemp("", "goblock-")
	if err != nil {
		wl.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rfd, wfd, err := openFIFO(filepath.Join(dir, "fifo"))
	if err != nil {
		wl.Fatal(err)
	}

	type role struct {
		name string
		tid  int
	}
	start := make(chan struct{})
	tids := make(chan role, 3)
	results := make(chan wl.Block, 2)
	// Each goroutine keeps its OS thread to itself: the blocking calls and
	// the tid they report then belong to the same thread, start to end.
	locked := func(name string, body func()) {
		go func() {
			runtime.LockOSThread()
			tids <- role{name, syscall.Gettid()}
			<-start
			body()
		}()
	}
	locked("reader", func() { results <- blockRead(rfd, *n) })
	locked("sleeper", func() { results <- blockNanosleep(*n, *sleep) })
	locked("writer", func() { feed(wfd, *n, *period) })

	got := map[string]int{}
	for range 3 {
		r := <-tids
		got[r.name] = r.tid
	}
	wl.Ready("reader", got["reader"], "sleeper", got["sleeper"], "writer", got["writer"])
	wl.WaitGo()
	close(start)

	var truth wl.Truth
	for range 2 {
		truth.Blocks = append(truth.Blocks, <-results)
	}
	wl.WriteTruth(truth)
}

// openFIFO makes a FIFO and opens both ends with raw, blocking fds: an
// *os.File would put the FIFO in Go's netpoller, and reads would park the
// goroutine instead of blocking the thread.
func openFIFO(path string) (rfd, wfd int, err error) {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return 0, 0, err
	}
	// Non-blocking open of the read end so the write end's open finds a
	// reader and does not wait; then the read end goes back to blocking.
	rfd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	wfd, err = syscall.Open(path, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	return rfd, wfd, syscall.SetNonblock(rfd, false)
}

//go:noinline
func blockRead(fd, n int) wl.Block {
	b := wl.Block{Func: "blockRead", Syscall: "read", TID: syscall.Gettid(), Count: n}
	var buf [1]byte
	for range n {
		t0 := time.Now()
		if _, err := syscall.Read(fd, buf[:]); err != nil {
			wl.Fatal(err)
		}
		b.Seconds += time.Since(t0).Seconds()
	}
	return b
}

//go:noinline
func blockNanosleep(n int, d time.Duration) wl.Block {
	b := wl.Block{Func: "blockNanosleep", Syscall: "nanosleep", TID: syscall.Gettid(), Count: n}
	for range n {
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		t0 := time.Now()
		for {
			// The remainder goes back into ts, so EINTR resumes the sleep.
			if err := syscall.Nanosleep(&ts, &ts); err != syscall.EINTR {
				break
			}
		}
		b.Seconds += time.Since(t0).Seconds()
	}
	return b
}

// feed writes one byte every period, n times.
func feed(fd, n int, period time.Duration) {
	for range n {
		time.Sleep(period)
		if _, err := syscall.Write(fd, []byte{'x'}); err != nil {
			wl.Fatal(err)
		}
	}
}
