// gohttp is a Go HTTP service whose handler calls a slow TCP backend with
// a blocking read, for the first-screen culprit test:
//
//   - a backend on 127.0.0.1 answers each one-byte request after -delay
//     (20 ms);
//   - quoteHandler (GET /quote) calls fetchQuote, which writes a request
//     on its backend connection and reads the answer with read(2) on a
//     blocking fd (as a cgo client or a blocking driver would: Go's own
//     net reads park the goroutine, not the thread, and are not off-CPU
//     time of a thread);
//   - the load: -n requests to /quote, one at a time, from this process.
//
// Protocol: "ready main=TID backend=PORT", one line on stdin, run, truth
// JSON (fetchQuote: the summed time around each read, syscall read,
// target "tcp LOCAL->BACKEND"), exit 0.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"blockprof/testdata/workloads/wl"
)

var (
	mu      sync.Mutex
	backend int // blocking fd of the backend connection
	blocked time.Duration
	calls   int
	tid     int
)

// fetchQuote asks the backend and waits for its answer in read(2).
func fetchQuote() (byte, error) {
	mu.Lock()
	defer mu.Unlock()
	if _, err := syscall.Write(backend, []byte{'q'}); err != nil {
		return 0, err
	}
	b := make([]byte, 1)
	t0 := time.Now()
	_, err := syscall.Read(backend, b)
	blocked += time.Since(t0)
	calls++
	tid = syscall.Gettid()
	return b[0], err
}

func quoteHandler(w http.ResponseWriter, r *http.Request) {
	q, err := fetchQuote()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	fmt.Fprintf(w, "quote %c\n", q)
}

func serveBackend(l net.Listener, delay time.Duration) {
	c, err := l.Accept()
	if err != nil {
		return
	}
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
		time.Sleep(delay)
		c.Write([]byte{'v'})
	}
}

func main() {
	n := flag.Int("n", 30, "requests")
	delay := flag.Duration("delay", 20*time.Millisecond, "backend answer delay")
	flag.Parse()

	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		wl.Fatal(err)
	}
	go serveBackend(bl, *delay)
	conn, err := net.Dial("tcp", bl.Addr().String())
	if err != nil {
		wl.Fatal(err)
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		wl.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		if backend, err = syscall.Dup(int(fd)); err == nil {
			err = syscall.SetNonblock(backend, false)
		}
	})
	if err != nil {
		wl.Fatal(err)
	}
	local := conn.LocalAddr().String()

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		wl.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/quote", quoteHandler)
	go http.Serve(hl, mux)

	wl.Ready("main", syscall.Gettid(), "backend", bl.Addr().(*net.TCPAddr).Port)
	wl.WaitGo()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < *n; i++ {
		resp, err := client.Get("http://" + hl.Addr().String() + "/quote")
		if err != nil {
			wl.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	wl.WriteTruth(wl.Truth{Blocks: []wl.Block{{Func: "main.fetchQuote", Syscall: "read", TID: tid, Count: calls,
		Seconds: blocked.Seconds(), Target: "tcp " + local + "->" + bl.Addr().String()}}})
}
