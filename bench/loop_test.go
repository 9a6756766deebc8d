package bench

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockprof/internal/testutil"
)

// BenchmarkLoopEchoOverhead: requests per second of a busy asyncio echo
// server (16 connections, 64-byte messages, closed loop) unprofiled, then
// with `blockprof record --loop`, then with plain `blockprof record`,
// alternating over rounds in one run. Reported as ratios of the
// unprofiled rate (1 = no cost): loop_ratio is what loop mode costs the
// server (the wait-syscall tracepoints, on-CPU samples, tagged records),
// plain_ratio the same without loop mode.
var loopExtra = strings.Fields(os.Getenv("BLOCKPROF_LOOP_EXTRA"))

func BenchmarkLoopEchoOverhead(b *testing.B) {
	testutil.RequireRoot(b)
	blockprof(b)
	var py string
	for _, p := range testutil.Pythons() {
		if err := syscall.Access(p.Path, 1); err == nil {
			py = p.Path
			break
		}
	}
	if py == "" {
		b.Skip("no CPython 3.11-3.13 installed")
	}
	script := testutil.RepoRoot(b) + "/testdata/workloads/python/loop_app.py"
	w := testutil.Start(b, py, script, "echo", "1")
	w.Ready(b)
	w.Go(b)
	addr := fmt.Sprintf("127.0.0.1:%d", w.TIDs()["port"])
	const conns, span, rounds = 16, 2 * time.Second, 3
	if _, err := testutil.EchoLoad(addr, conns, span); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var off, loop, plain []float64
		for range rounds {
			for _, mode := range []string{"off", "loop", "plain"} {
				var prof *profiler
				switch mode {
				case "loop":
					prof = startBlockprofWith(b, w.PID(), append([]string{"--loop"}, loopExtra...)...)
				case "plain":
					prof = startBlockprofWith(b, w.PID())
				}
				rate, err := testutil.EchoLoad(addr, conns, span)
				if err != nil {
					b.Fatal(err)
				}
				if prof != nil {
					prof.stop(b)
				}
				switch mode {
				case "off":
					off = append(off, rate)
				case "loop":
					loop = append(loop, rate)
				default:
					plain = append(plain, rate)
				}
			}
		}
		base := median(off)
		b.ReportMetric(base, "req/s_off")
		b.ReportMetric(median(loop)/base, "loop_ratio")
		b.ReportMetric(median(plain)/base, "plain_ratio")
	}
}
