package attach

import (
	"testing"
	"time"
)

func parts(names ...string) (out [8][32]int8, n uint32) {
	for i, s := range names { // leaf first, as the kernel walks
		for j := 0; j < len(s) && j < 31; j++ {
			out[i][j] = int8(s[j])
		}
	}
	return out, uint32(len(names))
}

func flatParts(s string) (out [8][32]int8) {
	for i := 0; i < len(s) && i < 255; i++ {
		out[i/32][i%32] = int8(s[i])
	}
	return out
}

func TestTargetString(t *testing.T) {
	file := blockprofFdTarget{Mode: sIFREG | 0o644}
	file.Parts, file.Nparts = parts("wal.log", "app", "lib", "var")
	fifo := blockprofFdTarget{Mode: sIFIFO | 0o600}
	fifo.Parts, fifo.Nparts = parts("fifo", "tmp")
	pipe := blockprofFdTarget{Mode: sIFIFO | 0o600, Ino: 42}
	pipe.Parts, pipe.Nparts = parts("")
	anon := blockprofFdTarget{Mode: 0o600}
	anon.Parts, anon.Nparts = parts("[eventfd]")
	tcp := blockprofFdTarget{Mode: sIFSOCK, Family: 2, Sotype: 1, Protocol: 6, Lport: 51234, Rport: 6379,
		Laddr: [16]uint8{127, 0, 0, 1}, Raddr: [16]uint8{10, 0, 0, 7}}
	tcp6 := blockprofFdTarget{Mode: sIFSOCK, Family: 10, Sotype: 1, Protocol: 6, Lport: 8080,
		Laddr: [16]uint8{15: 1}}
	udp := blockprofFdTarget{Mode: sIFSOCK, Family: 2, Sotype: 2, Protocol: 17, Lport: 53, Laddr: [16]uint8{127, 0, 0, 53}}
	unixPeer := blockprofFdTarget{Mode: sIFSOCK, Family: 1, Flat: 1, UnixPeer: 1, Parts: flatParts("/run/app.sock")}
	unixAbstract := blockprofFdTarget{Mode: sIFSOCK, Family: 1, Flat: 1, Parts: flatParts("\x00bus")}
	unnamed := blockprofFdTarget{Mode: sIFSOCK, Family: 1}
	for _, tc := range []struct {
		d    blockprofFdTarget
		want string
	}{
		{file, "file /var/lib/app/wal.log"},
		{fifo, "fifo /tmp/fifo"},
		{pipe, "pipe:[42]"},
		{anon, "[eventfd]"},
		{tcp, "tcp 127.0.0.1:51234->10.0.0.7:6379"},
		{tcp6, "tcp6 [::1]:8080 (listening or unconnected)"},
		{udp, "udp 127.0.0.53:53 (listening or unconnected)"},
		{unixPeer, "unix ->/run/app.sock"},
		{unixAbstract, "unix @bus"},
		{unnamed, "unix (unnamed)"},
	} {
		if got := newFdTarget(&tc.d).String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if got := newFdTarget(&tcp).Short(); got != "tcp 10.0.0.7:6379" {
		t.Errorf("Short = %q", got)
	}
}

func TestArgTargetString(t *testing.T) {
	never := uint64(1<<64 - 1)
	for _, tc := range []struct {
		kind blockprofTargetKind
		a, b uint64
		want string
	}{
		{blockprofTargetKindTK_FUTEX, 0x7f00dead0040, 0, "futex 0x7f00dead0040 wait"},
		{blockprofTargetKindTK_FUTEX, 0x1000, 9 | futexTimed, "futex 0x1000 wait_bitset, timed"},
		{blockprofTargetKindTK_SLEEP, uint64(20 * time.Millisecond), 0, "sleep 20ms"},
		{blockprofTargetKindTK_SLEEP, uint64(200 * time.Millisecond), sleepDeadline, "sleep 200ms (deadline)"},
		{blockprofTargetKindTK_SLEEP, 0, sleepDeadline | sleepUnknown, "sleep until a deadline"},
		{blockprofTargetKindTK_POLL, 3, never, "poll 3 fds, no timeout"},
		{blockprofTargetKindTK_POLL, 64, uint64(time.Second), "poll 64 fds, timeout 1s"},
		{blockprofTargetKindTK_CHILD, 4242, never, "child 4242"},
		{blockprofTargetKindTK_CHILD, never, never, "child (any)"},
		{blockprofTargetKindTK_CHILD, 7, 1, "child (waitid type 1, id 7)"},
		{blockprofTargetKindTK_UNREADABLE, 0, 0, "(argument unreadable)"},
	} {
		if got := newArgTarget(tc.kind, tc.a, tc.b).String(); got != tc.want {
			t.Errorf("%v(%#x, %#x) = %q, want %q", tc.kind, tc.a, tc.b, got, tc.want)
		}
	}
	w := Waker{Kind: WakerTask, TGID: 10, TID: 12, Comm: "flusher"}
	if got := w.String(); got != "flusher 10/12" {
		t.Errorf("waker = %q", got)
	}
	if got := (Waker{Kind: WakerIRQ}).String(); got != "[interrupt]" {
		t.Errorf("irq waker = %q", got)
	}
}
