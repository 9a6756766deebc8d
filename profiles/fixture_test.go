package profiles

import (
	"time"

	"blockprof/internal/symbolize"
)

// fixture is a hand-built recording of two targets: a C server (main
// executable with a build ID, libc, kernel frames, inlining, a frameless
// libc location, an empty stack, a preemption with a synthetic frame, an
// address outside any mapping) and an exited Go worker whose stacks run
// through runtime and syscall wrappers.
type fixture struct {
	p                         *Profile
	exe, libc, kern, synth    *symbolize.Mapping
	goExe                     *symbolize.Mapping
	blocked, runq             time.Duration
	count                     int64
	readStack, futexStack     []symbolize.Location
	goSleepStack, goIdleStack []symbolize.Location
	goReadStack               []symbolize.Location
}

func kframes(m *symbolize.Mapping, base uint64, names ...string) []symbolize.Location {
	out := make([]symbolize.Location, len(names))
	for i, n := range names {
		out[i] = symbolize.Location{
			Address: base + uint64(i)*0x100,
			Mapping: m,
			Frames:  []symbolize.Frame{{Function: n, SystemName: n}},
		}
	}
	return out
}

func loc(m *symbolize.Mapping, addr uint64, frames ...symbolize.Frame) symbolize.Location {
	return symbolize.Location{Address: addr, Mapping: m, Frames: frames}
}

func fr(name, file string, line int) symbolize.Frame {
	return symbolize.Frame{Function: name, SystemName: name, File: file, Line: line, StartLine: max(line-5, 0)}
}

func cat(parts ...[]symbolize.Location) []symbolize.Location {
	var out []symbolize.Location
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func newFixture() *fixture {
	f := &fixture{}
	f.exe = &symbolize.Mapping{
		Start: 0x400000, Limit: 0x480000, Offset: 0, File: "/srv/bin/server",
		BuildID:      "4f2c0a9e1b7d33c8a0e5f6172839405a6b7c8d9e",
		HasFunctions: true, HasFilenames: true, HasLineNumbers: true, HasInlineFrames: true,
	}
	f.libc = &symbolize.Mapping{
		Start: 0x7f0000028000, Limit: 0x7f00001bd000, Offset: 0x28000,
		File:         "/usr/lib/x86_64-linux-gnu/libc.so.6",
		BuildID:      "0123456789abcdef0123456789abcdef01234567",
		HasFunctions: true,
	}
	f.kern = &symbolize.Mapping{Start: 0xffffffff81000000, Limit: ^uint64(0),
		File: "[kernel.kallsyms]", HasFunctions: true}
	f.synth = &symbolize.Mapping{File: "[blockprof]", HasFunctions: true}
	f.goExe = &symbolize.Mapping{
		Start: 0x400000, Limit: 0x500000, File: "/opt/worker/worker",
		BuildID:      "go-build-id-worker",
		HasFunctions: true, HasFilenames: true, HasLineNumbers: true, HasInlineFrames: true,
	}

	sysRead := kframes(f.kern, 0xffffffff81100000, "__schedule", "schedule", "pipe_read",
		"vfs_read", "ksys_read", "__x64_sys_read", "do_syscall_64", "entry_SYSCALL_64_after_hwframe")
	sysFutex := kframes(f.kern, 0xffffffff81200000, "__schedule", "schedule", "futex_wait_queue",
		"__futex_wait", "futex_wait", "do_futex", "__x64_sys_futex", "do_syscall_64",
		"entry_SYSCALL_64_after_hwframe")
	sysSleep := kframes(f.kern, 0xffffffff81300000, "__schedule", "schedule", "do_nanosleep",
		"hrtimer_nanosleep", "common_nsleep", "__x64_sys_clock_nanosleep", "do_syscall_64",
		"entry_SYSCALL_64_after_hwframe")
	preempt := kframes(f.kern, 0xffffffff81400000, "__schedule", "preempt_schedule_irq",
		"irqentry_exit", "asm_sysvec_apic_timer_interrupt")
	epoll := kframes(f.kern, 0xffffffff81500000, "__schedule", "schedule",
		"schedule_hrtimeout_range", "do_epoll_wait", "__x64_sys_epoll_wait", "do_syscall_64")

	f.readStack = cat(sysRead, []symbolize.Location{
		loc(f.libc, 0x7f0000114a1c, symbolize.Frame{Function: "__GI___libc_read",
			SystemName: "__GI___libc_read", File: "../sysdeps/unix/sysv/linux/read.c", Line: 26}),
		// block_read inlined into handle_conn: callee first.
		loc(f.exe, 0x401233, fr("block_read", "/src/server/io.c", 31), fr("handle_conn", "/src/server/server.c", 60)),
		loc(f.exe, 0x401500, fr("main", "/src/server/server.c", 90)),
		loc(f.libc, 0x7f0000029d8f), // __libc_start_call_main, unresolved
	})
	f.futexStack = cat(sysFutex, []symbolize.Location{
		loc(f.libc, 0x7f0000091116, symbolize.Frame{Function: "__futex_abstimed_wait_common64"}),
		loc(f.libc, 0x7f0000093a40, symbolize.Frame{Function: "pthread_cond_wait",
			SystemName: "pthread_cond_wait@@GLIBC_2.3.2"}),
		loc(f.exe, 0x402010, fr("queue_pop", "/src/server/queue.c", 12)),
		loc(f.exe, 0x402300, fr("worker_main", "/src/server/server.c", 120)),
		loc(f.libc, 0x7f0000094ac2, symbolize.Frame{Function: "start_thread"}),
		loc(f.libc, 0x7f0000126850, symbolize.Frame{Function: "clone3"}),
	})
	preemptStack := cat(
		[]symbolize.Location{loc(f.synth, 0, symbolize.Frame{Function: "[preempted]"})},
		preempt,
		[]symbolize.Location{loc(f.exe, 0x403000, fr("compute", "/src/server/work.c", 200))},
	)
	epollStack := cat(epoll, []symbolize.Location{{Address: 0x7fff12345678}})

	f.goSleepStack = cat(sysSleep, []symbolize.Location{
		loc(f.goExe, 0x46a1c0, fr("runtime.usleep", "/usr/local/go/src/runtime/sys_linux_amd64.s", 140)),
		loc(f.goExe, 0x43b2e0, fr("runtime.sysmon", "/usr/local/go/src/runtime/proc.go", 6200)),
		loc(f.goExe, 0x4333a0, fr("runtime.mstart1", "/usr/local/go/src/runtime/proc.go", 1800)),
		loc(f.goExe, 0x4332a0, fr("runtime.mstart0", "/usr/local/go/src/runtime/proc.go", 1750)),
		loc(f.goExe, 0x466a40, fr("runtime.mstart", "/usr/local/go/src/runtime/asm_amd64.s", 395)),
	})
	f.goIdleStack = cat(sysFutex, []symbolize.Location{
		loc(f.goExe, 0x46a3a3, fr("runtime.futex", "/usr/local/go/src/runtime/sys_linux_amd64.s", 557)),
		loc(f.goExe, 0x42f0d0, fr("runtime.futexsleep", "/usr/local/go/src/runtime/os_linux.go", 75)),
		loc(f.goExe, 0x40ca10, fr("runtime.notesleep", "/usr/local/go/src/runtime/lock_futex.go", 171)),
		loc(f.goExe, 0x436e40, fr("runtime.mPark", "/usr/local/go/src/runtime/proc.go", 1887),
			fr("runtime.stopm", "/usr/local/go/src/runtime/proc.go", 2905)),
		loc(f.goExe, 0x438a10, fr("runtime.findRunnable", "/usr/local/go/src/runtime/proc.go", 3582)),
		loc(f.goExe, 0x439b20, fr("runtime.schedule", "/usr/local/go/src/runtime/proc.go", 3995)),
	})
	f.goReadStack = cat(sysRead, []symbolize.Location{
		loc(f.goExe, 0x402e4e, fr("internal/runtime/syscall.Syscall6", "/usr/local/go/src/internal/runtime/syscall/asm_linux_amd64.s", 36)),
		loc(f.goExe, 0x47c4c4, fr("syscall.RawSyscall6", "/usr/local/go/src/syscall/syscall_linux.go", 38),
			fr("syscall.Syscall", "/usr/local/go/src/syscall/syscall_linux.go", 82)),
		loc(f.goExe, 0x47b0b0, fr("syscall.read", "/usr/local/go/src/syscall/zsyscall_linux_amd64.go", 736)),
		loc(f.goExe, 0x48e1c0, fr("internal/poll.(*FD).Read", "/usr/local/go/src/internal/poll/fd_unix.go", 165)),
		loc(f.goExe, 0x48f2d0, fr("os.(*File).read", "/usr/local/go/src/os/file_posix.go", 29),
			fr("os.(*File).Read", "/usr/local/go/src/os/file.go", 124)),
		loc(f.goExe, 0x4a0010, fr("main.blockRead", "/src/worker/main.go", 31)),
		loc(f.goExe, 0x4a0200, fr("main.main", "/src/worker/main.go", 60)),
		loc(f.goExe, 0x43a0e0, fr("runtime.main", "/usr/local/go/src/runtime/proc.go", 283)),
	})

	f.p = &Profile{
		Start:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Duration: 10 * time.Second,
		Comments: []string{"blockprof -p 100 -p 200 -d 10s"},
		Drops:    map[string]uint64{"ringbuf_full": 10, "stack_missing": 2, "unused": 0},
		Processes: map[int]Process{
			100: {PID: 100, Comm: "server", Command: "/srv/bin/server -l :80", Main: f.exe},
			200: {PID: 200, Comm: "worker", Exited: true, Main: f.goExe},
		},
		Samples: []Sample{
			{Stack: f.readStack, PID: 100, TID: 101, Comm: "server", Thread: "reader", State: "S",
				Kind: "blocked", Count: 24, Blocked: 1200 * time.Millisecond, RunQueue: 3 * time.Millisecond,
				Labels: map[string]string{"target": "server", "comm": "ignored", "pid": "x"}},
			{Stack: f.readStack, PID: 100, TID: 102, Comm: "server", Thread: "reader", State: "S",
				Kind: "blocked", Count: 6, Blocked: 300 * time.Millisecond, RunQueue: time.Millisecond},
			{Stack: f.futexStack, PID: 100, TID: 103, Comm: "server", Thread: "pool;1\n", State: "S",
				Kind: "blocked", Count: 100, Blocked: 500 * time.Millisecond, RunQueue: 20 * time.Millisecond},
			{PID: 100, TID: 104, Comm: "server", Thread: "disk", State: "D",
				Kind: "blocked", Count: 3, Blocked: 10 * time.Millisecond},
			{Stack: preemptStack, PID: 100, TID: 105, Comm: "server", Thread: "cruncher", State: "R",
				Kind: "preempted", Count: 7, RunQueue: 40 * time.Millisecond},
			{Stack: epollStack, PID: 100, TID: 106, Comm: "server", Thread: "jit", State: "S",
				Kind: "blocked", Count: 1, Blocked: 50 * time.Millisecond, RunQueue: 5 * time.Microsecond},
			{Stack: f.goSleepStack, PID: 200, TID: 201, Comm: "worker", Thread: "worker", State: "S",
				Kind: "blocked", Count: 2000, Blocked: 200 * time.Millisecond, RunQueue: 9 * time.Millisecond},
			{Stack: f.goIdleStack, PID: 200, TID: 202, Comm: "worker", Thread: "worker", State: "S",
				Kind: "blocked", Count: 40, Blocked: 280 * time.Millisecond, RunQueue: 2 * time.Millisecond},
			{Stack: f.goReadStack, PID: 200, TID: 200, Comm: "worker", Thread: "worker", State: "S",
				Kind: "blocked", Count: 2, Blocked: 900 * time.Millisecond, RunQueue: 100 * time.Microsecond},
		},
	}
	for _, s := range f.p.Samples {
		f.blocked += s.Blocked
		f.runq += s.RunQueue
		f.count += s.Count
	}
	return f
}
