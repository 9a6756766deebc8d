package testutil

import (
	"strings"
	"testing"
)

func TestCheckTruth(t *testing.T) {
	good := Truth{PID: 1,
		Blocks: []Block{{Func: "a", TID: 2, Seconds: 0.1}, {Func: "w", TID: 3, Seconds: 1}, {Func: "w", TID: 4, Seconds: 1}},
		CPU:    []CPU{{Func: "spin", TID: 2, Seconds: 0.2, Wall: 0.3}}}
	blocks, cpu := map[string]int{"a": 1, "w": 2}, map[string]int{"spin": 1}
	if o := runTB(func(tb testing.TB) { CheckTruth(tb, good, blocks, cpu) }); o.failed {
		t.Errorf("complete truth rejected: %s", o.msg)
	}
	for name, tc := range map[string]struct {
		tr   Truth
		want string
	}{
		"block missing":   {Truth{Blocks: good.Blocks[1:], CPU: good.CPU}, "0 entries for a, want 1"},
		"one thread less": {Truth{Blocks: good.Blocks[:2], CPU: good.CPU}, "1 entries for w, want 2"},
		"cpu missing":     {Truth{Blocks: good.Blocks}, "0 entries for spin"},
		"unexpected":      {Truth{Blocks: append(good.Blocks[:3:3], Block{Func: "b", TID: 5, Seconds: 1}), CPU: good.CPU}, "unexpected entries for b"},
		"zero seconds":    {Truth{Blocks: append([]Block{{Func: "a", TID: 2}}, good.Blocks[1:]...), CPU: good.CPU}, "no thread or no time"},
		"no thread":       {Truth{Blocks: append([]Block{{Func: "a", Seconds: 1}}, good.Blocks[1:]...), CPU: good.CPU}, "no thread or no time"},
		"cpu zero":        {Truth{Blocks: good.Blocks, CPU: []CPU{{Func: "spin", TID: 2}}}, "no thread or no time"},
		"empty":           {Truth{}, "want 1"},
	} {
		o := runTB(func(tb testing.TB) { CheckTruth(tb, tc.tr, blocks, cpu) })
		if !o.failed || !strings.Contains(o.msg, tc.want) {
			t.Errorf("%s: failed=%v %q, want a failure saying %q", name, o.failed, o.msg, tc.want)
		}
	}
}

func TestTruthBlock(t *testing.T) {
	tr := Truth{Blocks: []Block{{Func: "a", TID: 2, Seconds: 0.1}, {Func: "w", TID: 3, Seconds: 1}, {Func: "w", TID: 4, Seconds: 1}, {Func: "z", TID: 5}},
		CPU: []CPU{{Func: "spin", TID: 2, Seconds: 0.2, Wall: 0.3}, {Func: "idle", TID: 2}}}
	var b Block
	if o := runTB(func(tb testing.TB) { b = TruthBlock(tb, tr, "a") }); o.failed || b.TID != 2 {
		t.Errorf("TruthBlock(a) = %+v, %q", b, o.msg)
	}
	var c CPU
	if o := runTB(func(tb testing.TB) { c = TruthCPU(tb, tr, "spin") }); o.failed || c.TID != 2 {
		t.Errorf("TruthCPU(spin) = %+v, %q", c, o.msg)
	}
	for _, fn := range []string{"missing", "w", "z"} {
		if o := runTB(func(tb testing.TB) { TruthBlock(tb, tr, fn) }); !o.failed {
			t.Errorf("TruthBlock(%s) passed", fn)
		}
	}
	for _, fn := range []string{"missing", "idle"} {
		if o := runTB(func(tb testing.TB) { TruthCPU(tb, tr, fn) }); !o.failed {
			t.Errorf("TruthCPU(%s) passed", fn)
		}
	}
}
