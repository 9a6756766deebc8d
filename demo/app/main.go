// Command app is blockprof's demo workload: a small "service" whose request
// handler blocks its OS thread in three known places, the way sync clients
// and careless I/O do in production. It runs for a few seconds and exits.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

func main() {
	requests := flag.Int("n", 60, "requests to serve")
	flag.Parse()

	dir, err := os.MkdirTemp("", "blockprof-demo-")
	check(err)
	defer os.RemoveAll(dir)

	// A "cache server" on the other end of a pipe answers after 15 ms.
	var req, resp [2]int
	check(syscall.Pipe(req[:]))
	check(syscall.Pipe(resp[:]))
	go cacheServer(req[0], resp[1])

	audit, err := os.Create(filepath.Join(dir, "audit.log"))
	check(err)
	defer audit.Close()

	runtime.LockOSThread() // the handler owns its thread, as a C server's would
	start := time.Now()
	for i := 0; i < *requests; i++ {
		handleRequest(i, req[1], resp[0], audit)
	}
	fmt.Printf("demo app: served %d requests in %s\n", *requests, time.Since(start).Round(time.Millisecond))
}

//go:noinline
func handleRequest(i, cacheReq, cacheResp int, audit *os.File) {
	getCached(cacheReq, cacheResp)
	if i%4 == 0 {
		writeAudit(audit, i)
	}
	throttle()
}

// getCached is the "sync Redis client": a blocking round trip per request.
//
//go:noinline
func getCached(cacheReq, cacheResp int) {
	var b [1]byte
	_, err := syscall.Write(cacheReq, b[:])
	check(err)
	_, err = syscall.Read(cacheResp, b[:])
	check(err)
}

// writeAudit makes every fourth request durable before answering.
//
//go:noinline
func writeAudit(f *os.File, i int) {
	_, err := fmt.Fprintf(f, "request %d served\n", i)
	check(err)
	check(f.Sync())
}

// throttle is a leftover "rate limit": a plain sleep in the handler.
//
//go:noinline
func throttle() {
	ts := syscall.NsecToTimespec(int64(10 * time.Millisecond))
	_ = syscall.Nanosleep(&ts, nil)
}

func cacheServer(in, out int) {
	runtime.LockOSThread()
	var b [1]byte
	for {
		if n, err := syscall.Read(in, b[:]); n != 1 || err != nil {
			return
		}
		ts := syscall.NsecToTimespec(int64(15 * time.Millisecond))
		_ = syscall.Nanosleep(&ts, nil)
		if _, err := syscall.Write(out, b[:]); err != nil {
			return
		}
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo app:", err)
		os.Exit(1)
	}
}
