package gopclntab

import (
	"os"
	"testing"
)

func benchTable(b *testing.B) (*Table, []uint64) {
	exe, err := os.Executable()
	if err != nil {
		b.Skip(err)
	}
	tb, _ := openTable(b, exe)
	return tb, samplePCs(tb, 4)
}

func BenchmarkLookup(b *testing.B) {
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	}
	// cold: no caches, every lookup decodes its function's tables.
	b.Run("cold", func(b *testing.B) {
		tb, pcs := benchTable(b)
		tb.fcap, tb.pcacheOn = 0, false
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tb.Lookup(pcs[i%len(pcs)])
		}
		report(b)
	})
	// funccache: distinct pcs, decoded functions reused.
	b.Run("funccache", func(b *testing.B) {
		tb, pcs := benchTable(b)
		tb.pcacheOn = false
		pcs = pcs[:min(len(pcs), 20000)]
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tb.Lookup(pcs[i%len(pcs)])
		}
		report(b)
	})
	// cached: a profiler's steady state, the same hot pcs again and again.
	b.Run("cached", func(b *testing.B) {
		tb, pcs := benchTable(b)
		hot := make([]uint64, 0, 2000)
		for i := 0; i < len(pcs) && len(hot) < cap(hot); i += len(pcs)/cap(hot) + 1 {
			hot = append(hot, pcs[i])
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tb.Lookup(hot[i%len(hot)])
		}
		report(b)
	})
	b.Run("cached-parallel", func(b *testing.B) {
		tb, pcs := benchTable(b)
		hot := pcs[:min(len(pcs), 2000)]
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				tb.Lookup(hot[i%len(hot)])
				i++
			}
		})
		report(b)
	})
}
