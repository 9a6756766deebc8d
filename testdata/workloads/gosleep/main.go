// gosleep: -g goroutines each call time.Sleep(-sleep, 10 ms) in a loop for
// -d (1 s). Sleeping goroutines park on the Go scheduler, not on an OS
// thread, so a thread-level profiler sees scheduler threads idling and
// never sleepLoop: this workload pins down that documented limitation.
// Truth: the goroutines' total time in time.Sleep, summed in one entry.
package main

import (
	"flag"
	"sync"
	"time"

	"blockprof/testdata/workloads/wl"
)

func main() {
	g := flag.Int("g", 4, "goroutines")
	d := flag.Duration("d", time.Second, "how long each goroutine sleeps in total")
	sleep := flag.Duration("sleep", 10*time.Millisecond, "one time.Sleep")
	flag.Parse()

	wl.Ready()
	wl.WaitGo()

	var (
		mu  sync.Mutex
		sum = wl.Block{Func: "sleepLoop", Syscall: ""}
		wg  sync.WaitGroup
	)
	for range *g {
		wg.Go(func() {
			count, secs := sleepLoop(*d, *sleep)
			mu.Lock()
			sum.Count += count
			sum.Seconds += secs
			mu.Unlock()
		})
	}
	wg.Wait()
	wl.WriteTruth(wl.Truth{Blocks: []wl.Block{sum}})
}

//go:noinline
func sleepLoop(total, one time.Duration) (count int, secs float64) {
	start := time.Now()
	for time.Since(start) < total {
		t0 := time.Now()
		time.Sleep(one)
		secs += time.Since(t0).Seconds()
		count++
	}
	return count, secs
}
