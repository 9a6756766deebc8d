/* Types shared between the BPF program and Go (bpf2go emits them with
 * -type, so both sides agree on layout and on the names of drop reasons). */
#pragma once

#define TASK_COMM_LEN 16

/* Kernel stacks deeper than this are truncated; 64 covers the deepest
 * blocking paths seen (network filesystems, nested block I/O). */
#define KERNEL_STACK_DEPTH 64
/* The kernel's default perf_event_max_stack. */
#define USER_STACK_DEPTH 127

enum interval_kind {
	KIND_BLOCKED = 0,   /* voluntary switch-out: the thread waited */
	KIND_PREEMPTED = 1, /* involuntary: runnable all along (opt-in) */
	/* Preempted after setting a sleeping state, on its way into a wait:
	 * counted as blocked from its wakeup on. Kept in per-thread state
	 * only; aggregated as KIND_BLOCKED. */
	KIND_PREEMPTED_SLEEPING = 2,
	/* Loop mode: on-CPU samples of a loop thread inside an iteration
	 * (count = samples, blocked_ns = the sampling periods they stand for). */
	KIND_ONCPU = 3,
};

/* Why data was lost. Every early exit that loses data bumps one of these;
 * user space prints them by name. */
enum drop_reason {
	DROP_USTACK_COLLISION = 0, /* user stack map bucket taken by another stack */
	DROP_USTACK_ERROR,         /* user stack could not be walked */
	DROP_KSTACK_COLLISION,     /* kernel stack map bucket taken */
	DROP_KSTACK_ERROR,         /* kernel stack could not be walked */
	DROP_AGG_FULL,             /* aggregation map full: interval lost */
	DROP_AGG_FULL_NS,          /* ... and the nanoseconds it carried */
	DROP_STORAGE,              /* no per-task storage could be made */
	DROP_THREADS_FULL,         /* thread-name map full (names missing) */
	DROP_TARGETS_FULL,         /* a followed child could not be added */
	DROP_FILTERED,             /* outside --min-block/--max-block (not a loss) */
	DROP_LATENCY_FULL,         /* latency histogram map full (sums unaffected) */
	DROP_FD_UNREADABLE,        /* an fd's file could not be read (target unknown) */
	DROP_ARG_UNREADABLE,       /* a syscall argument in user memory could not be read */
	DROP_UNCLOSED,             /* an interval never closed: its switch-in was not seen */
	DROP_SWITCHIN_MISSED,      /* ... recovered from CPU time: total exact, blocked/run-queue split may not be */
	DROP_UNWIND_PARTIAL,       /* table unwinding stopped early (rule not expressible, unreadable) */
	DROP_UNWIND_TRUNCATED,     /* ... or at its frame limit */
	DROP_UNWIND_PENDING,       /* walked before the process's tables were loaded */
	DROP_PY_READ,              /* Python thread state or frames unreadable (stack cut short) */
	DROP_PY_TRUNCATED,         /* Python stack deeper than PY_MAX_FRAMES (outer frames cut) */
	DROP_LOOP_EVENT,           /* loop event ring full: a stall (or a new loop thread) not reported */
	DROP_LOOP_STATS_FULL,      /* too many loop threads: one is not measured */
	DROP_PROC_EVENT,           /* process event ring full: a new process found by polling instead */
	DROP_MAX,
};

/* What a blocked syscall waited on, read from its arguments at the moment
 * of blocking. (ta, tb) mean different things per kind. */
enum target_kind {
	TK_NONE = 0,
	/* ta = struct file *, tb = inode number: key of fd_targets. The pointer
	 * with the inode, so a closed and reused fd (or a recycled struct
	 * file) is never confused with the old one. */
	TK_FD = 1,
	TK_PATH = 2,  /* ta = hash of the path argument: key of path_args */
	TK_FUTEX = 3, /* ta = user address, tb = futex op (flags masked off) */
	TK_SLEEP = 4, /* ta = requested ns, tb = SLEEP_* flags */
	TK_POLL = 5,  /* ta = nfds or maxevents, tb = timeout ns, -1: none */
	TK_CHILD = 6, /* ta = pid / id as given, tb = waitid idtype, ~0 for wait4 */
	TK_UNREADABLE = 7, /* the argument could not be read */
};

#define FUTEX_TIMED 0x100 /* tb of TK_FUTEX: the wait has a timeout */

#define SLEEP_ABSOLUTE 1 /* a deadline: ta is the time left at blocking, ms-rounded */
#define SLEEP_UNKNOWN 2  /* a deadline on a clock BPF cannot read */

/* Who ended a blocked interval (sched_waking runs in the waker's context). */
enum waker_kind {
	WAKER_NONE = 0, /* not seen (woken before attach, or preempted) */
	WAKER_TASK = 1,
	/* Interrupt context: a timer or device interrupt, or softirq work
	 * (network receive...). "current" is then just whoever was
	 * interrupted, so it is not named. */
	WAKER_IRQ = 2,
};

/* One aggregation bucket: which thread, where, in what state, blocked on
 * what, woken by whom. No implicit padding: keys are compared as bytes. */
struct agg_key {
	u32 tgid;
	u32 tid;
	s32 ustack; /* stack id, or -errno when not captured */
	s32 kstack;
	u32 state; /* prev_state at switch-out (TASK_* bits) */
	u32 kind;  /* enum interval_kind */
	/* The syscall the thread blocked in, -1 for none (see bprof_switch). */
	s32 sysnr;
	s32 fd; /* the fd argument of an fd syscall, else -1 */
	u32 tkind; /* enum target_kind */
	u32 waker_kind; /* enum waker_kind */
	u64 ta, tb;
	u32 waker_tgid, waker_tid; /* 0 unless waker_kind is WAKER_TASK */
	s32 waker_ustack, waker_kstack; /* with cfg_waker_stacks, else -1 */
	char waker_comm[TASK_COMM_LEN];
	/* Python frames: key of py_stacks (bpf/include/python.h), 0 if none. */
	u64 pystack;
	/* User stack unwound with .eh_frame tables: key of unw_stacks, 0 if
	 * the stack came from frame pointers (ustack). */
	u64 uhash;
	/* Loop mode: the loop iteration the interval (or sample) fell in, 0
	 * for none. User space keeps it only if that iteration stalled. */
	u32 loop_seq;
	/* CUT_* bits: the interval was cut by the window (it began before
	 * it, or was still going at its end). */
	u32 cut;
};

#define CUT_BEFORE 1 /* began before the window: measured from its start */
#define CUT_AFTER 2  /* still going at the window's end: closed there */

/* A thread found off-CPU by a task iterator (see "Waits in progress"). */
struct inflight_wait {
	u64 since;   /* when its wait began, CLOCK_MONOTONIC (from the scheduler; 0 if unknown) */
	u32 tgid;
	u32 state;   /* __state: TASK_INTERRUPTIBLE 1, TASK_UNINTERRUPTIBLE 2, ... */
};

#define PATH_PARTS 8
#define PART_LEN 32

/* What an fd pointed to, resolved in the kernel while the thread blocked. */
struct fd_target {
	u16 mode;   /* i_mode: S_IFREG, S_IFIFO, S_IFSOCK, ... */
	u16 family; /* sockets: AF_INET, AF_INET6, AF_UNIX */
	u16 lport, rport;
	u8 laddr[16], raddr[16];
	u64 ino;
	u16 sotype, protocol; /* sockets: SOCK_STREAM.., IPPROTO_TCP.. */
	u32 nparts;    /* path components found, leaf first */
	u32 truncated; /* deeper than PATH_PARTS */
	/* flat: parts holds one string (a unix socket's path) instead. */
	u32 flat;
	u32 unix_peer; /* the unix path is the peer's: the socket has none */
	char parts[PATH_PARTS][PART_LEN];
};

struct fd_key {
	u64 file;
	u64 ino;
};

struct agg_val {
	u64 count;
	u64 blocked_ns;  /* switch-out -> wakeup */
	u64 runqueue_ns; /* wakeup -> running again */
	u64 bytes;       /* bytes asked for by read/write-like calls */
};

#define PATH_ARG_LEN 256

/* A path argument of open/stat/unlink..., as the process passed it. */
struct path_arg {
	char path[PATH_ARG_LEN];
};

/* A thread seen off-CPU: its process and its names at the time. */
struct thread_info {
	u32 tgid;
	char comm[TASK_COMM_LEN];        /* thread name */
	char leader_comm[TASK_COMM_LEN]; /* process name */
};

/* log2 buckets of single off-CPU intervals (blocked + run-queue), per
 * process, syscall and target: bucket i counts intervals in [2^i, 2^(i+1)) ns. */
#define LAT_BUCKETS 40

struct lat_key {
	u32 tgid;
	s32 sysnr;
	u32 tkind;
	u32 pad;
	u64 ta, tb;
};

struct lat_val {
	u64 buckets[LAT_BUCKETS];
	u64 max_ns;
};

/* Event-loop mode. Iteration times go into log-linear buckets: 8 per
 * power of two (3 bits after the leading one), so a percentile read off
 * them is within 1/8 of the truth. */
#define LOOP_SUB_BITS 3
#define LOOP_HIST (64 << LOOP_SUB_BITS)

/* One loop thread, as user space reads it. */
struct loop_stats {
	u32 tgid, tid;
	u64 wait;   /* identity of its loop wait (see loop_wait_id) */
	s32 sysnr;  /* the wait's syscall */
	u32 in_iter; /* an iteration is running (the thread is not in its wait) */
	u32 seq;     /* the current or last iteration */
	u32 done_seq; /* every iteration up to this one is decided: its stall, if any, is in loop_events */
	u64 iter_start; /* when the current iteration began (its wait returned) */
	u64 iterations, stalls;
	u64 total_ns, max_ns;
	u64 hist[LOOP_HIST];
};

enum loop_event_kind {
	LOOP_EV_FOUND = 1, /* a thread became a loop thread: start sampling it */
	LOOP_EV_STALL = 2, /* an iteration ran past the stall threshold */
};

struct loop_event {
	u32 kind; /* enum loop_event_kind */
	u32 tgid, tid, seq;
	u64 wait;
	u64 start, end; /* the iteration: its wait's return, the next wait's call */
	u64 off_ns;     /* off-CPU time inside it (blocked + run-queue) */
	s32 sysnr;
	u32 pad;
};

/* A followed process appeared, exec'ed or exited: user space reads its
 * mappings at once (a short-lived child may be gone by the next poll) and
 * lets go of its state once it is gone. */
enum proc_event_kind {
	PROC_FORK = 1, /* tgid is a new child of a target (now a target) */
	PROC_EXEC = 2, /* target tgid exec'ed: new code */
	PROC_EXIT = 3, /* the last thread of target tgid exited: its entries are released */
	/* tgid's main thread blocks for the first time since its fork or
	 * exec: it is in /proc, its mappings hold all the code it has run,
	 * and it stays blocked (alive) for a while. */
	PROC_BLOCKED = 4,
};

struct proc_event {
	u32 kind; /* enum proc_event_kind */
	u32 tgid;
	u32 ptgid; /* PROC_FORK: the parent, whose mappings the child has until it execs */
	u32 pad;
};
