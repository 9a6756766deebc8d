package attach

import "testing"

func parts(names ...string) (out [8][32]int8, n uint32) {
	for i, s := range names { // leaf first, as the kernel walks
		for j := 0; j < len(s) && j < 31; j++ {
			out[i][j] = int8(s[j])
		}
	}
	return out, uint32(len(names))
}

func TestFdTargetString(t *testing.T) {
	file := blockprofFdTarget{Mode: sIFREG | 0o644}
	file.Parts, file.Nparts = parts("wal.log", "app", "lib", "var")
	fifo := blockprofFdTarget{Mode: sIFIFO | 0o600}
	fifo.Parts, fifo.Nparts = parts("fifo", "tmp")
	pipe := blockprofFdTarget{Mode: sIFIFO | 0o600, Ino: 42}
	pipe.Parts, pipe.Nparts = parts("")
	anon := blockprofFdTarget{Mode: 0o600}
	anon.Parts, anon.Nparts = parts("[eventfd]")
	tcp := blockprofFdTarget{Mode: sIFSOCK, Family: 2, Lport: 51234, Rport: 6379,
		Laddr: [16]uint8{127, 0, 0, 1}, Raddr: [16]uint8{10, 0, 0, 7}}
	tcp6 := blockprofFdTarget{Mode: sIFSOCK, Family: 10, Lport: 8080,
		Laddr: [16]uint8{15: 1}}
	for _, tc := range []struct {
		d    blockprofFdTarget
		want string
	}{
		{file, "file /var/lib/app/wal.log"},
		{fifo, "fifo /tmp/fifo"},
		{pipe, "pipe:[42]"},
		{anon, "[eventfd]"},
		{tcp, "inet 127.0.0.1:51234->10.0.0.7:6379"},
		{tcp6, "inet6 [::1]:8080 (listening or unconnected)"},
	} {
		if got := newFdTarget(&tc.d).String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
