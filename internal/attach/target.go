package attach

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Target is what a blocked syscall waited on, as the kernel read it at the
// moment of blocking: an fd's file or socket, a path argument, a futex
// word, a sleep, a poll, a child. Targets are interned per session, so
// equal targets are the same pointer.
type Target struct {
	// Kind: file fifo pipe dir chr blk anon, tcp udp tcp6 udp6 raw unix
	// socket (fds); path; futex; sleep; poll; child; unreadable.
	Kind string
	// Path: files as the process sees them (mounts crossed); anon inodes
	// as "[eventfd]"; unix sockets their bound name ("@name": abstract);
	// path arguments as passed (relative ones stay relative).
	Path          string
	Local, Remote netip.AddrPort // inet sockets
	Peer          bool           // unix: Path is the peer's name (this end has none)
	Ino           uint64
	Truncated     bool // the path was deeper than the kernel reads

	Addr uint64 // futex: the user address of the word
	Op   string // futex: the operation ("wait", "wait_bitset", "lock_pi", ...)
	// Timed: a futex wait with a timeout.
	Timed bool

	// Duration: sleep asked for (or, for a deadline, the time left when the
	// thread blocked, rounded to the ms); poll: the timeout, negative for
	// none.
	Duration time.Duration
	Deadline bool // sleep: an absolute deadline
	Unknown  bool // sleep: a deadline on a clock BPF cannot read (realtime)
	N        int  // poll: fds or maxevents; child: the pid (or id) waited for
	IDType   int  // child: waitid's idtype, -1 for wait4
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

// newFdTarget describes what the kernel found behind an fd.
func newFdTarget(d *blockprofFdTarget) *Target {
	t := &Target{Ino: d.Ino, Truncated: d.Truncated != 0}
	switch d.Mode & sIFMT {
	case sIFSOCK:
		t.Kind = socketKind(d)
		switch d.Family {
		case 2:
			t.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d.Laddr[:4])), d.Lport)
			t.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(d.Raddr[:4])), d.Rport)
		case 10:
			t.Local = netip.AddrPortFrom(netip.AddrFrom16(d.Laddr).Unmap(), d.Lport)
			t.Remote = netip.AddrPortFrom(netip.AddrFrom16(d.Raddr).Unmap(), d.Rport)
		case 1:
			if d.Flat != 0 {
				t.Path = unixName(flat(&d.Parts))
				t.Peer = d.UnixPeer != 0
			}
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

// socketKind names a socket by family and protocol: tcp, udp6, unix, ...
func socketKind(d *blockprofFdTarget) string {
	const (
		sockStream = 1
		sockDgram  = 2
		ipprotoTCP = 6
		ipprotoUDP = 17
	)
	var six string
	switch d.Family {
	case 1:
		return "unix"
	case 2:
	case 10:
		six = "6"
	default:
		return fmt.Sprintf("socket(family %d)", d.Family)
	}
	switch {
	case d.Protocol == ipprotoTCP || (d.Protocol == 0 && d.Sotype == sockStream):
		return "tcp" + six
	case d.Protocol == ipprotoUDP || (d.Protocol == 0 && d.Sotype == sockDgram):
		return "udp" + six
	}
	return fmt.Sprintf("inet%s(proto %d)", six, d.Protocol)
}

// flat reads the parts array as one NUL-terminated string.
func flat(parts *[8][32]int8) string {
	buf := make([]int8, 0, len(parts)*len(parts[0]))
	for i := range parts {
		buf = append(buf, parts[i][:]...)
	}
	if len(buf) > 0 && buf[0] == 0 {
		// Abstract unix name: a leading NUL, then bytes up to the next NUL.
		return "\x00" + cString(buf[1:])
	}
	return cString(buf)
}

func unixName(s string) string {
	if strings.HasPrefix(s, "\x00") {
		return "@" + s[1:]
	}
	return s
}

// futexOps names futex operations (the command, flags masked off).
var futexOps = map[uint64]string{
	0: "wait", 1: "wake", 2: "fd", 3: "requeue", 4: "cmp_requeue", 5: "wake_op",
	6: "lock_pi", 7: "unlock_pi", 8: "trylock_pi", 9: "wait_bitset", 10: "wake_bitset",
	11: "wait_requeue_pi", 12: "cmp_requeue_pi", 13: "lock_pi2",
}

const futexTimed = 0x100 // FUTEX_TIMED

const (
	sleepDeadline = 1 // SLEEP_ABSOLUTE
	sleepUnknown  = 2 // SLEEP_UNKNOWN
)

// newArgTarget decodes a target read from syscall arguments; fd and path
// targets come from their maps instead.
func newArgTarget(kind blockprofTargetKind, a, b uint64) *Target {
	switch kind {
	case blockprofTargetKindTK_FUTEX:
		cmd := b & 0x7f
		op, ok := futexOps[cmd]
		if !ok {
			op = fmt.Sprintf("op%d", cmd)
		}
		return &Target{Kind: "futex", Addr: a, Op: op, Timed: b&futexTimed != 0}
	case blockprofTargetKindTK_SLEEP:
		return &Target{Kind: "sleep", Duration: time.Duration(a), Deadline: b&sleepDeadline != 0, Unknown: b&sleepUnknown != 0}
	case blockprofTargetKindTK_POLL:
		return &Target{Kind: "poll", N: int(a), Duration: time.Duration(int64(b))}
	case blockprofTargetKindTK_CHILD:
		return &Target{Kind: "child", N: int(int64(a)), IDType: int(int64(b))}
	case blockprofTargetKindTK_UNREADABLE:
		return &Target{Kind: "unreadable"}
	}
	return nil
}

// String is the label value: "file /var/lib/app/wal.log", "fifo /tmp/f",
// "pipe:[1234]", "tcp 10.0.0.5:51234->10.0.0.7:6379", "unix /run/x.sock",
// "futex 0x7f3a2c001040 wait", "sleep 20ms", "sleep 200ms (deadline)" (the
// time left when it blocked), "poll 3 fds, timeout 1s",
// "child 4242".
func (t *Target) String() string {
	switch t.Kind {
	case "tcp", "udp", "tcp6", "udp6":
		if t.Remote.Port() == 0 {
			return fmt.Sprintf("%s %s (listening or unconnected)", t.Kind, t.Local)
		}
		return fmt.Sprintf("%s %s->%s", t.Kind, t.Local, t.Remote)
	case "unix":
		switch {
		case t.Path == "":
			return "unix (unnamed)"
		case t.Peer:
			return "unix ->" + t.Path
		}
		return "unix " + t.Path
	case "pipe":
		return t.Path
	case "path":
		return "path " + t.Path
	case "futex":
		if t.Timed {
			return fmt.Sprintf("futex %#x %s, timed", t.Addr, t.Op)
		}
		return fmt.Sprintf("futex %#x %s", t.Addr, t.Op)
	case "sleep":
		switch {
		case t.Unknown:
			return "sleep until a deadline"
		case t.Deadline:
			return "sleep " + t.Duration.String() + " (deadline)"
		}
		return "sleep " + t.Duration.String()
	case "poll":
		timeout := "no timeout"
		if t.Duration >= 0 {
			timeout = "timeout " + t.Duration.String()
		}
		return fmt.Sprintf("poll %d fds, %s", t.N, timeout)
	case "child":
		switch {
		case t.IDType >= 0:
			return fmt.Sprintf("child (waitid type %d, id %d)", t.IDType, t.N)
		case t.N == -1:
			return "child (any)"
		case t.N < -1:
			return fmt.Sprintf("child (group %d)", -t.N)
		}
		return fmt.Sprintf("child %d", t.N)
	case "unreadable":
		return "(argument unreadable)"
	}
	if strings.HasPrefix(t.Path, "[") {
		return t.Path
	}
	if strings.HasPrefix(t.Kind, "socket") || strings.HasPrefix(t.Kind, "inet") {
		return t.Kind
	}
	return t.Kind + " " + t.Path
}

// Short is the target as a synthetic frame reads it: without the local
// address of a socket ("tcp 127.0.0.1:6379"), otherwise String.
func (t *Target) Short() string {
	switch t.Kind {
	case "tcp", "udp", "tcp6", "udp6":
		if t.Remote.Port() != 0 {
			return t.Kind + " " + t.Remote.String()
		}
		return t.Kind + " listen " + t.Local.String()
	}
	return t.String()
}

// WakerKind says what context ended a blocked interval.
type WakerKind uint32

const (
	WakerNone WakerKind = WakerKind(blockprofWakerKindWAKER_NONE)
	WakerTask WakerKind = WakerKind(blockprofWakerKindWAKER_TASK)
	WakerIRQ  WakerKind = WakerKind(blockprofWakerKindWAKER_IRQ)
)

// Waker is who woke a thread: a task (another thread, a process) or an
// interrupt. Comparable: it is part of an aggregation key.
type Waker struct {
	Kind      WakerKind
	TGID, TID uint32
	Comm      string
	// Stack IDs of the waker (with Options.WakerStacks), else negative.
	UserStackID, KernelStackID int32
}

// String is the label value: "comm pid/tid" (the waking thread's name),
// "[interrupt]" (a timer, a device, softirq work such as network
// receive: --waker-stacks tells which), or "" when the wakeup was not seen.
func (w Waker) String() string {
	switch w.Kind {
	case WakerTask:
		if w.TGID == w.TID {
			return fmt.Sprintf("%s %d", w.Comm, w.TGID)
		}
		return fmt.Sprintf("%s %d/%d", w.Comm, w.TGID, w.TID)
	case WakerIRQ:
		return "[interrupt]"
	}
	return ""
}
