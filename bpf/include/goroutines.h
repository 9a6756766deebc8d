/* Types shared between bpf/goroutines.bpf.c and Go (bpf2go -type), for
 * goroutine parks measured with uprobes on the Go runtime. */
#pragma once

/* Frames kept of a parked goroutine's stack (its caller chain from the
 * function that called runtime.gopark). Deeper stacks lose outer frames. */
#define GO_STACK_DEPTH 48

/* Where one Go binary keeps what the programs read, in bytes, from the
 * binary's DWARF or the per-version table (internal/goroutines). */
struct go_proc {
	u32 g_goid;       /* runtime.g.goid */
	u32 g_schedlink;  /* runtime.g.schedlink (gList links, injectglist) */
	u32 pd_fd;        /* runtime.pollDesc.fd */
	u32 pd_rg;        /* runtime.pollDesc.rg */
	u32 pd_wg;        /* runtime.pollDesc.wg */
	u32 pd_self;      /* runtime.pollDesc.self: checks a pollDesc address */
	u32 iowait;       /* waitReasonIOWait's value in this version */
	u32 pad;
};

/* A goroutine parked right now (key: process and g address). */
struct go_park {
	u64 parked_ns; /* gopark entered, CLOCK_MONOTONIC */
	u64 ready_ns;  /* made runnable (ready/injectglist), 0: not yet */
	u64 goid;
	u64 stack;       /* key of go_stacks */
	u64 file, ino;   /* IO wait: the fd's file and inode (key of go_fds), 0 if none */
	u64 waker_stack; /* --waker-stacks: the waking goroutine's stack, 0 if none */
	u64 waker_goid;
	u32 reason;      /* waitReason, as passed to gopark */
	u32 pad;
};

struct go_key {
	u32 tgid;
	u32 pad;
	u64 g;
};

/* One aggregation bucket: parks of one goroutine at one stack, for one
 * reason, on one target, woken from one place. */
struct go_agg_key {
	u32 tgid;
	u32 reason;
	u64 goid;
	u64 stack;
	u64 file, ino;
	u64 waker_stack;
};

struct go_agg_val {
	u64 count;
	u64 blocked_ns;  /* gopark -> made runnable */
	u64 runqueue_ns; /* made runnable -> runtime.execute */
	u64 unsplit;     /* parks whose wakeup was not seen: all blocked */
};

struct go_stack {
	u32 n;
	u32 truncated;
	u64 pcs[GO_STACK_DEPTH]; /* return addresses, innermost first */
};

/* What a poll descriptor's fd was: a socket's addresses, or the inode's
 * mode and number. */
struct go_fd {
	u16 mode;
	u16 family;
	u16 lport, rport;
	u16 sotype, protocol;
	u32 pad;
	u8 laddr[16], raddr[16];
	u64 ino;
};

struct go_fd_key {
	u64 file;
	u64 ino;
};

enum go_drop {
	GO_DROP_PARKED_FULL = 0, /* too many goroutines parked at once: a park not measured */
	GO_DROP_STACKS_FULL,     /* stack map full: a park kept without its stack */
	GO_DROP_STACK_READ,      /* the goroutine's stack could not be read */
	GO_DROP_AGG_FULL,        /* aggregation map full: a park lost */
	GO_DROP_POLLDESC,        /* IO wait whose poll descriptor did not check out: no target */
	GO_DROP_FD,              /* the poll descriptor's fd could not be resolved */
	GO_DROP_MAX,
};
