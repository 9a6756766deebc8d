package unwind

import (
	"debug/elf"
	"os"
	"testing"
)

// llvmPath is the large file: libLLVM comes with clang-19, which
// `make generate` needs anyway.
const llvmPath = "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1"

// benchBuild reports the build time per op (use -benchtime 1x for one
// cold build), allocations, and the table's size per MB of CFI.
func benchBuild(b *testing.B, path string) {
	if _, err := os.Stat(path); err != nil {
		b.Skip(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	b.ResetTimer()
	var tab *Table
	for b.Loop() {
		if tab, err = Build(f); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cfi := float64(tab.Stats.EhFrameBytes + tab.Stats.DebugFrameBytes)
	b.ReportMetric(float64(tab.Bytes())/(cfi/(1<<20)), "tableB/MBcfi")
	b.ReportMetric(cfi, "cfiB")
	b.ReportMetric(float64(tab.Stats.Rows), "rows")
	b.ReportMetric(float64(tab.Stats.UnsupportedRows), "unsupported-rows")
}

func BenchmarkBuildTableLibc(b *testing.B)     { benchBuild(b, libcPath) }
func BenchmarkBuildTablePython(b *testing.B)   { benchBuild(b, pythonPath) }
func BenchmarkBuildTableLibLLVM(b *testing.B)  { benchBuild(b, llvmPath) }
func BenchmarkBuildTableGoBinary(b *testing.B) { benchBuild(b, goTestBinary(b)) }
