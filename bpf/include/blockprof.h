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
	DROP_PY_READ,              /* Python thread state or frames unreadable (stack cut short) */
	DROP_PY_TRUNCATED,         /* Python stack deeper than PY_MAX_FRAMES (outer frames cut) */
	DROP_MAX,
};

/* One aggregation bucket: which thread, where, and in what state. */
struct agg_key {
	u32 tgid;
	u32 tid;
	s32 ustack; /* stack id, or -errno when not captured */
	s32 kstack;
	u32 state; /* prev_state at switch-out (TASK_* bits) */
	u32 kind;  /* enum interval_kind */
	/* The syscall the thread blocked in, -1 for none (see syscall_nr()). */
	s32 sysnr;
	s32 fd; /* the fd argument of an fd syscall, else -1 */
	/* What the fd was at the moment of blocking: key of fd_targets, 0 if
	 * none. The file pointer with the inode number, so a closed and reused
	 * fd (or a recycled struct file) is never confused with the old one. */
	u64 tfile;
	u64 tino;
	/* Python frames: key of py_stacks (bpf/include/python.h), 0 if none. */
	u64 pystack;
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
	u32 nparts;    /* path components found, leaf first */
	u32 truncated; /* deeper than PATH_PARTS */
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
};

/* A thread seen off-CPU: its process and its names at the time. */
struct thread_info {
	u32 tgid;
	char comm[TASK_COMM_LEN];        /* thread name */
	char leader_comm[TASK_COMM_LEN]; /* process name */
};

/* log2 buckets of single off-CPU intervals (blocked + run-queue), per
 * process and syscall: bucket i counts intervals in [2^i, 2^(i+1)) ns. */
#define LAT_BUCKETS 40

struct lat_key {
	u32 tgid;
	s32 sysnr;
};

struct lat_val {
	u64 buckets[LAT_BUCKETS];
	u64 max_ns;
};
