package elfinfo

import (
	"debug/elf"
	"os"
	"testing"
)

func TestGoBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, goID := BuildIDs(f); goID == "" {
		t.Error("the test binary has no Go build ID")
	}
	if !IsGo(f) {
		t.Error("the test binary is not recognised as Go")
	}
}

func TestLoadBias(t *testing.T) {
	// A PIE's text segment linked at 0x1234 from file offset 0x1234,
	// mapped from its page (offset 0x1000) at 0x7f0000001000.
	seg := &elf.Prog{ProgHeader: elf.ProgHeader{Type: elf.PT_LOAD, Off: 0x1234, Vaddr: 0x1234, Filesz: 0x2000}}
	bias, ok := LoadBias(seg, 0x7f0000001000, 0x1000)
	if !ok || bias != 0x7f0000000000 {
		t.Errorf("LoadBias = %#x, %v; want 0x7f0000000000", bias, ok)
	}
	if _, ok := LoadBias(seg, 0x7f0000004000, 0x4000); ok {
		t.Error("a mapping past the segment was taken for it")
	}
	seg.Type = elf.PT_NOTE
	if _, ok := LoadBias(seg, 0x7f0000001000, 0x1000); ok {
		t.Error("a non-PT_LOAD segment gave a bias")
	}
}
