// goparks parks goroutines in the ways a Go service does, each in its own
// function, and times every park with the monotonic clock:
//
//   - sleeper: time.Sleep(-sleep, 10 ms);
//   - chanRecv: a channel receive fed every -feed (20 ms);
//   - selectWait: a select on two channels, one fed every -feed;
//   - lockWait: sync.Mutex.Lock while another goroutine holds it -hold (5 ms);
//   - netRead: net.Conn.Read from a loopback server that answers after
//     -answer (20 ms).
//
// All run at once for -d. With -blockprofile FILE it also runs
// runtime.SetBlockProfileRate(1) and writes its own block profile there.
// Protocol: "ready server=ADDR" on stdout, one line on stdin, run, truth
// JSON to $BLOCKPROF_TRUTH, exit 0. Self-contained and written for Go 1.21
// (no module imports, no newer language features): the tests build it
// with old toolchains too.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

// block is one function's parks, as internal/testutil reads them.
type block struct {
	Func    string  `json:"func"`
	Reason  string  `json:"reason"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	Target  string  `json:"target,omitempty"`
}

type truth struct {
	PID    int     `json:"pid"`
	Blocks []block `json:"blocks"`
	CPU    []any   `json:"cpu"`
}

func main() {
	d := flag.Duration("d", time.Second, "how long each function runs")
	sleep := flag.Duration("sleep", 10*time.Millisecond, "one time.Sleep")
	feed := flag.Duration("feed", 20*time.Millisecond, "channel feed period")
	hold := flag.Duration("hold", 5*time.Millisecond, "mutex hold time")
	answer := flag.Duration("answer", 20*time.Millisecond, "server answer delay")
	blockProfile := flag.String("blockprofile", "", "write Go's own block profile here")
	flag.Parse()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	go serve(ln, *answer)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fatal(err)
	}

	fmt.Printf("ready server=%s\n", ln.Addr())
	bufio.NewReader(os.Stdin).ReadString('\n')
	if *blockProfile != "" {
		runtime.SetBlockProfileRate(1)
	}

	deadline := time.Now().Add(*d)
	results := make(chan block, 5)
	var wg sync.WaitGroup
	run := func(f func() block) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- f()
		}()
	}
	run(func() block { return sleeper(deadline, *sleep) })
	ch := make(chan int)
	stop := make(chan struct{})
	go feeder(ch, *feed, stop)
	run(func() block { return chanRecv(deadline, ch) })
	a, b := make(chan int), make(chan int)
	go feeder(a, *feed, stop)
	run(func() block { return selectWait(deadline, a, b) })
	run(func() block { return mutexRound(deadline, *hold) })
	run(func() block {
		r := netRead(deadline, conn)
		r.Target = "tcp " + conn.LocalAddr().String() + "->" + conn.RemoteAddr().String()
		return r
	})
	wg.Wait()
	close(stop)
	close(results)

	tr := truth{PID: os.Getpid(), CPU: []any{}}
	for r := range results {
		tr.Blocks = append(tr.Blocks, r)
	}
	if *blockProfile != "" {
		f, err := os.Create(*blockProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.Lookup("block").WriteTo(f, 0); err != nil {
			fatal(err)
		}
		f.Close()
	}
	data, err := json.Marshal(tr)
	if err != nil {
		fatal(err)
	}
	if path := os.Getenv("BLOCKPROF_TRUTH"); path != "" {
		err = os.WriteFile(path, append(data, '\n'), 0o644)
	} else {
		_, err = os.Stdout.Write(append(data, '\n'))
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

//go:noinline
func sleeper(deadline time.Time, one time.Duration) block {
	b := block{Func: "sleeper", Reason: "sleep"}
	for time.Now().Before(deadline) {
		t0 := time.Now()
		time.Sleep(one)
		b.Seconds += time.Since(t0).Seconds()
		b.Count++
	}
	return b
}

// feeder sends on ch every period until stop closes.
func feeder(ch chan<- int, period time.Duration, stop <-chan struct{}) {
	for i := 0; ; i++ {
		time.Sleep(period)
		select {
		case ch <- i:
		case <-stop:
			return
		}
	}
}

//go:noinline
func chanRecv(deadline time.Time, ch <-chan int) block {
	b := block{Func: "chanRecv", Reason: "chan receive"}
	for time.Now().Before(deadline) {
		t0 := time.Now()
		<-ch
		b.Seconds += time.Since(t0).Seconds()
		b.Count++
	}
	return b
}

//go:noinline
func selectWait(deadline time.Time, a, c <-chan int) block {
	b := block{Func: "selectWait", Reason: "select"}
	for time.Now().Before(deadline) {
		t0 := time.Now()
		select {
		case <-a:
		case <-c:
		}
		b.Seconds += time.Since(t0).Seconds()
		b.Count++
	}
	return b
}

// mutexRound has a holder goroutine take the mutex and keep it for hold,
// while this goroutine waits for it in lockWait; then again.
func mutexRound(deadline time.Time, hold time.Duration) block {
	b := block{Func: "lockWait", Reason: "sync.Mutex.Lock"}
	var mu sync.Mutex
	held := make(chan struct{})
	next := make(chan struct{})
	go func() {
		for range next {
			mu.Lock()
			held <- struct{}{}
			time.Sleep(hold)
			mu.Unlock()
		}
	}()
	for time.Now().Before(deadline) {
		next <- struct{}{}
		<-held
		b.Seconds += lockWait(&mu)
		b.Count++
		mu.Unlock()
	}
	close(next)
	return b
}

//go:noinline
func lockWait(mu *sync.Mutex) float64 {
	t0 := time.Now()
	mu.Lock()
	return time.Since(t0).Seconds()
}

//go:noinline
func netRead(deadline time.Time, c net.Conn) block {
	b := block{Func: "netRead", Reason: "IO wait"}
	buf := make([]byte, 1)
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil {
			fatal(err)
		}
		t0 := time.Now()
		if _, err := c.Read(buf); err != nil {
			fatal(err)
		}
		b.Seconds += time.Since(t0).Seconds()
		b.Count++
	}
	return b
}

// serve answers each byte after delay.
func serve(ln net.Listener, delay time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			buf := make([]byte, 1)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				time.Sleep(delay)
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}(c)
	}
}
