package attach

import "testing"

// The committed object parses and holds everything the Go side uses; no
// root needed, so it runs on every machine.
func TestSpec(t *testing.T) {
	spec, err := loadBlockprof()
	if err != nil {
		t.Fatal(err)
	}
	var specs blockprofSpecs
	if err := spec.Assign(&specs); err != nil {
		t.Fatalf("object and generated Go disagree: %v", err)
	}
	for _, name := range []string{"bprof_switch", "bprof_wakeup", "bprof_fork", "bprof_exec"} {
		p, ok := spec.Programs[name]
		if !ok {
			t.Fatalf("program %s missing", name)
		}
		if len(name) > 15 || name[:len(programPrefix)] != programPrefix {
			t.Errorf("program %s: names must fit the kernel's 15 characters and start with %q", name, programPrefix)
		}
		_ = p
	}
	if got := spec.Maps["drops"].MaxEntries; got != uint32(blockprofDropReasonDROP_MAX) {
		t.Errorf("drops map has %d entries, want one per reason (%d)", got, blockprofDropReasonDROP_MAX)
	}
	for r := blockprofDropReason(0); r < blockprofDropReasonDROP_MAX; r++ {
		if n := dropName(r); n == "" || n[0] == 'r' && len(n) > 7 && n[:7] == "reason_" {
			t.Errorf("drop reason %d has no name", r)
		}
	}
}
