package attach

import (
	"fmt"
	"net/netip"
	"strings"
)

// FdTarget is what an fd was when a thread blocked on it.
type FdTarget struct {
	Kind string // file, fifo, pipe, tcp/udp-ish socket ("inet", "inet6"), unix, anon, dir, chr, blk
	Path string // files: the path as the process sees it (mounts crossed); anon: "[eventfd]" etc.
	// Sockets: local and remote address.
	Local, Remote netip.AddrPort
	Ino           uint64
	Truncated     bool // the path was deeper than the kernel reads
}

const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

func newFdTarget(d *blockprofFdTarget) *FdTarget {
	t := &FdTarget{Ino: d.Ino, Truncated: d.Truncated != 0}
	switch d.Mode & sIFMT {
	case sIFSOCK:
		switch d.Family {
		case 2:
			t.Kind = "inet"
			t.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d.Laddr[:4])), d.Lport)
			t.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d.Raddr[:4])), d.Rport)
		case 10:
			t.Kind = "inet6"
			t.Local = netip.AddrPortFrom(netip.AddrFrom16(d.Laddr).Unmap(), d.Lport)
			t.Remote = netip.AddrPortFrom(netip.AddrFrom16(d.Raddr).Unmap(), d.Rport)
		case 1:
			t.Kind = "unix"
		default:
			t.Kind = fmt.Sprintf("socket(family %d)", d.Family)
		}
		return t
	case sIFREG:
		t.Kind = "file"
	case sIFIFO:
		t.Kind = "fifo"
	case sIFDIR:
		t.Kind = "dir"
	case sIFCHR:
		t.Kind = "chr"
	case sIFBLK:
		t.Kind = "blk"
	default:
		t.Kind = "anon"
	}
	n := min(int(d.Nparts), len(d.Parts))
	parts := make([]string, 0, n)
	for i := n - 1; i >= 0; i-- { // the kernel walked leaf first
		parts = append(parts, cString(d.Parts[i][:]))
	}
	switch {
	case t.Kind == "fifo" && (n == 0 || parts[n-1] == ""):
		t.Kind, t.Path = "pipe", fmt.Sprintf("pipe:[%d]", d.Ino) // anonymous pipe (pipefs)
	case t.Kind == "anon" && n == 1:
		t.Path = parts[0] // anon inodes are named like "[eventfd]"
	default:
		t.Path = "/" + strings.Join(parts, "/")
		if t.Truncated {
			t.Path = "…" + t.Path
		}
	}
	return t
}

// String is the label value: "file /var/lib/app/wal.log", "fifo /tmp/f",
// "pipe:[1234]", "tcp 127.0.0.1:5000->127.0.0.1:6379" style for sockets.
func (t *FdTarget) String() string {
	switch t.Kind {
	case "inet", "inet6":
		if t.Remote.Port() == 0 {
			return fmt.Sprintf("%s %s (listening or unconnected)", t.Kind, t.Local)
		}
		return fmt.Sprintf("%s %s->%s", t.Kind, t.Local, t.Remote)
	case "unix", "pipe":
		if t.Path != "" {
			return t.Path
		}
		return t.Kind
	}
	if strings.HasPrefix(t.Path, "[") {
		return t.Path
	}
	return t.Kind + " " + t.Path
}
