// SPDX-License-Identifier: GPL-2.0
/* blockprof: off-CPU time of target threads, aggregated in the kernel.
 *
 * Design:
 *  - tp_btf/sched_switch does both halves. For prev (a target going off-CPU
 *    voluntarily) it stamps the time and takes the user and kernel stacks in
 *    prev's own context: with tracepoints only, this is the last moment the
 *    kernel will walk that thread's user stack. For next (coming back) it
 *    closes the interval and adds it to the aggregation map.
 *  - tp_btf/sched_waking marks when the thread became runnable, splitting the
 *    interval into blocked time and run-queue time, and who woke it.
 *  - What the thread waited on (fd target, path, futex, timeout...) is read
 *    from its syscall arguments at switch-out, in its own context.
 *  - Per-thread state lives in task storage (freed with the task, no PID
 *    reuse problems, no capacity limit to overflow).
 *  - Non-targets leave after one comparison (single PID) or one hash lookup.
 *  - Programs are named bprof_* so leftovers can be found by name.
 *  - Aggregation rotates over three maps: user space moves `active_agg` on
 *    and drains the map that stopped being written a whole drain interval
 *    earlier, so no add can still be in flight into what it reads and
 *    deletes (a program that read the old index can be held up by a vCPU
 *    stall, far past any fixed grace period).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "include/kernel.h"
#include "include/blockprof.h"
#include "include/python.h"
#include "include/unwind.h"

char LICENSE[] SEC("license") = "GPL";

/* Load-time configuration; the verifier prunes branches that are off. */
volatile const u32 cfg_single_tgid = 0;  /* one target process, no children: compare, don't look up */
volatile const bool cfg_filter_tids = 0; /* only threads listed in target_tids */
volatile const bool cfg_follow_children = 0;
/* Targets come and go while recording (children followed, or processes
 * added later): release an exited one's entries (bprof_exit). */
volatile const bool cfg_release_exited = 0;
volatile const bool cfg_preempted = 0;    /* also count involuntary switch-outs */
volatile const bool cfg_user_stacks = 1;
volatile const bool cfg_kernel_stacks = 1;
volatile const bool cfg_reuse_kstack = 1; /* see reuse_kstack() */
volatile const u64 cfg_min_block_ns = 0;
volatile const u64 cfg_max_block_ns = 0; /* 0: no maximum */
volatile const bool cfg_wakers = 1;       /* record who woke each interval */
volatile const bool cfg_waker_stacks = 0; /* ... and the waker's stacks */
volatile const bool cfg_unwind = 0;       /* user stacks from .eh_frame tables (unwind.h) */
volatile const bool cfg_targets = 1;      /* resolve what syscalls wait on (fds, arguments) */
/* --syscalls: only these syscall numbers (bit per number), and "none". */
volatile const bool cfg_filter_syscalls = 0;
volatile const bool cfg_allow_nosyscall = 0;
volatile const u64 cfg_syscall_mask[8] = {};
/* Event-loop mode (see "Event loops" below). */
volatile const bool cfg_loop = 0;
volatile const bool cfg_loop_auto = 0;   /* find loop threads by behaviour, not only loop_tids */
volatile const u64 cfg_loop_stall_ns = 100000000;

/* When counting stops (CLOCK_MONOTONIC; 0: not yet): user space sets it
 * just before detaching, so the window ends exactly there however long
 * the detach takes. Intervals are cut there, none opens after it. */
volatile u64 counting_until = 0;

/* Which aggregation map (0..2) is written; user space moves it on. */
volatile u32 active_agg = 0;
/* Adds in flight per aggregation map: user space drains a map only once
 * its count is back to zero (see agg_enter). */
u64 agg_inflight[3] = {};

/* Force bpf2go to emit these types. */
const enum drop_reason *unused_drop_reason __attribute__((unused));
const enum interval_kind *unused_interval_kind __attribute__((unused));
const enum target_kind *unused_target_kind __attribute__((unused));
const enum waker_kind *unused_waker_kind __attribute__((unused));
const enum unw_status *unused_unw_status __attribute__((unused));
const enum loop_event_kind *unused_loop_event_kind __attribute__((unused));
const struct loop_event *unused_loop_event __attribute__((unused));
const enum proc_event_kind *unused_proc_event_kind __attribute__((unused));
const struct proc_event *unused_proc_event __attribute__((unused));


/* tgid -> TARGET_*. Targets, plus children when following. Sized for a
 * process tree under `-- CMD`; overflow is counted (DROP_TARGETS_FULL). A
 * command launched by blockprof waits in TARGET_AWAIT_EXEC until it execs:
 * before that it is blockprof's own exec gate, not the command. */
#define TARGET_LIVE 1
#define TARGET_AWAIT_EXEC 2
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, u8);
} targets SEC(".maps");

/* tid -> 1, only consulted with cfg_filter_tids. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u8);
} target_tids SEC(".maps");

/* Per-thread interval in progress. */
struct task_state {
	u64 ts_out;  /* switch-out time, 0 when on CPU or not tracked */
	u64 ts_wake; /* wakeup time, 0 until woken */
	u64 exec_out; /* se.sum_exec_runtime at switch-out, see bprof_switch */
	s32 ustack;
	s32 kstack;
	u32 state;
	u32 kind;
	s32 sysnr;
	s32 fd;
	u32 tkind;
	u64 ta, tb;
	u64 bytes;
	/* Who woke the thread, set by the first sched_waking of the interval. */
	u32 waker_kind;
	u32 waker_tgid, waker_tid;
	s32 waker_ustack, waker_kstack;
	char waker_comm[TASK_COMM_LEN];
	bool named; /* thread_info written */
	/* What the last kernel stack was taken for; see reuse_kstack(). */
	u64 last_ustack;
	s32 last_kstack;
	u32 last_state;
	s64 last_sysnr;
	u64 last_arg0;
	u64 pystack; /* see python.h */
	u64 uhash;   /* unwound user stack, see unw_stacks */
	/* Event loops (see below). */
	u64 loop_wait;  /* identity of the thread's loop wait, 0 until elected */
	u64 loop_cand;  /* majority-vote candidate for it */
	u32 loop_votes;
	u32 loop_flags; /* LOOP_* */
	u32 loop_seq;   /* iteration running, 0 when none (in the wait, or no loop) */
	u32 loop_next;  /* last iteration number handed out */
	u32 out_seq;    /* loop_seq when the open interval began */
	u32 loop_pad;
	u64 iter_start; /* return of the last loop wait */
	u64 iter_off;   /* off-CPU ns closed inside the current iteration */
	u64 loop_file;  /* an epoll loop wait's struct file, see loop_wait_enter */
	/* Waits in progress (see the task iterators): CUT_BEFORE when the
	 * open interval began before the window, and when its wait began. */
	u32 cut;
	u32 cut_pad;
	u64 since;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} tstate SEC(".maps");

/* Stack id -> frames. Never cleared during a run: ids are hash buckets, so
 * clearing one while a sleeping thread still holds it would let another stack
 * take its id. Collisions are counted instead. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(u32));
	__uint(value_size, USER_STACK_DEPTH * sizeof(u64));
} ustacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(u32));
	__uint(value_size, KERNEL_STACK_DEPTH * sizeof(u64));
} kstacks SEC(".maps");

/* User stacks unwound in the kernel, by a hash of their frames. LRU: user
 * space copies each at the drain that first sees it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct unw_stack);
} unw_stacks SEC(".maps");

/* Wakers' kernel stacks, shallow on purpose: what matters is the wakeup
 * path (futex_wake <- do_futex, hrtimer_wakeup <- hrtimer_interrupt); below
 * an interrupt lies whatever it interrupted, which would only multiply
 * distinct stacks. */
#define WAKER_STACK_DEPTH 16
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 8192);
	__uint(key_size, sizeof(u32));
	__uint(value_size, WAKER_STACK_DEPTH * sizeof(u64));
} wkstacks SEC(".maps");

/* (thread, stacks, state, kind, syscall) -> sums. Rotated, see top. 65536
 * distinct buckets per drain interval is far beyond a real process. */
struct agg_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct agg_key);
	__type(value, struct agg_val);
};
struct agg_map agg0 SEC(".maps");
struct agg_map agg1 SEC(".maps");
struct agg_map agg2 SEC(".maps");

/* (tgid, syscall, target) -> latency histogram. Rotated with the
 * aggregation maps (same index, same in-flight count), so each drain reads
 * and empties one exactly: the histograms of a drain interval, not of the
 * whole run. 8192 distinct (process, syscall, target) per drain interval;
 * overflow is counted (DROP_LATENCY_FULL, sums unaffected). */
struct lat_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct lat_key);
	__type(value, struct lat_val);
};
struct lat_map latency0 SEC(".maps");
struct lat_map latency1 SEC(".maps");
struct lat_map latency2 SEC(".maps");

/* (file, inode) -> what the fd was. LRU: user space copies each one at the
 * drain that first sees it, long before it could be evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fd_key);
	__type(value, struct fd_target);
} fd_targets SEC(".maps");

/* Scratch for building an fd_target (too big for the BPF stack). Two
 * slots: see scratch_slot(). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, struct fd_target);
} fd_scratch SEC(".maps");

/* Path hash -> path argument (open, stat, unlink...). LRU like fd_targets. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct path_arg);
} path_args SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* see scratch_slot() */
	__type(key, u32);
	__type(value, struct path_arg);
} path_scratch SEC(".maps");

/* tid -> names, written once per thread at its first switch-out, so threads
 * that exit before the end still have names. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, struct thread_info);
} threads SEC(".maps");

/* enum drop_reason -> count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

static __always_inline void drop(u32 reason, u64 n)
{
	u64 *c = bpf_map_lookup_elem(&drops, &reason);
	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

/* Followed processes that appeared, exec'ed, first blocked or exited
 * (struct proc_event): user space reads a new process's mappings at once
 * rather than at its next poll, and lets go of an exited one's state.
 * 16-byte events, read as they come: 64 KiB holds 2.7k (with headers), far
 * more than a burst of forks between two reads. A lost one is counted (DROP_PROC_EVENT): polling
 * still finds the process, if it lives long enough. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} proc_events SEC(".maps");

static __always_inline void proc_event(u32 kind, u32 tgid, u32 ptgid)
{
	struct proc_event e = { .kind = kind, .tgid = tgid, .ptgid = ptgid };
	if (bpf_ringbuf_output(&proc_events, &e, sizeof(e), 0))
		drop(DROP_PROC_EVENT, 1);
}

/* The first test on every path: a load and a compare for one target, an
 * inlined hash lookup otherwise. It runs before any helper call
 * (task storage lookups are real calls), so non-targets stay cheap. */
static __always_inline bool tgid_is_target(struct task_struct *t)
{
	u32 tgid = t->tgid;

	if (cfg_single_tgid)
		return tgid == cfg_single_tgid;
	u8 *v = bpf_map_lookup_elem(&targets, &tgid);
	return v && *v == TARGET_LIVE;
}

static __always_inline bool is_target(struct task_struct *t)
{
	if (!tgid_is_target(t))
		return false;
	if (cfg_filter_tids) {
		u32 tid = t->pid;
		if (!bpf_map_lookup_elem(&target_tids, &tid))
			return false;
	}
	return true;
}

static __always_inline s32 stack_id(void *ctx, void *map, u64 flags, u32 collision, u32 error)
{
	long id = bpf_get_stackid(ctx, map, flags);
	if (id < 0)
		drop(id == -17 /* EEXIST */ ? collision : error, 1);
	return id;
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0;
	/* Unrolled binary search: constant cost, no loop for the verifier. */
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

/* A zeroed histogram to insert (too big for the BPF stack). */
const volatile struct lat_val lat_zero = {};

static __always_inline void record_latency(u32 idx, struct agg_key *k, u64 ns)
{
	void *latency = &latency0;
	if (idx == 1)
		latency = &latency1;
	else if (idx == 2)
		latency = &latency2;
	struct lat_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.tgid = k->tgid;
	key.sysnr = k->sysnr;
	key.tkind = k->tkind;
	key.ta = k->ta;
	key.tb = k->tb;
	struct lat_val *v = bpf_map_lookup_elem(latency, &key);
	if (!v) {
		bpf_map_update_elem(latency, &key, (void *)&lat_zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(latency, &key);
		if (!v) {
			drop(DROP_LATENCY_FULL, 1);
			return;
		}
	}
	u32 b = log2_u64(ns);
	if (b >= LAT_BUCKETS)
		b = LAT_BUCKETS - 1;
	__sync_fetch_and_add(&v->buckets[b], 1);
	/* Not atomic: two threads of one process ending intervals at the same
	 * instant may keep the smaller of two maxima. */
	if (ns > v->max_ns)
		v->max_ns = ns;
}

/* Take a slot in the active aggregation map: count ourselves in flight on
 * it, then check it is still the active one. User space moves active_agg
 * and then waits for the old map's in-flight count to reach zero, so once
 * the re-read agrees, the drain cannot start under us (both sides use
 * full-barrier atomics between their store and load). */
static __always_inline u32 agg_enter(void)
{
	u32 idx = active_agg;
	for (int i = 0; i < 3; i++) {
		if (idx > 2)
			idx = 0;
		__sync_fetch_and_add(&agg_inflight[idx], 1);
		u32 again = active_agg;
		if (again == idx)
			break;
		__sync_fetch_and_add(&agg_inflight[idx], -1);
		idx = again;
		if (i == 2) {
			/* Rotated three times under us: give up on exactness. */
			if (idx > 2)
				idx = 0;
			__sync_fetch_and_add(&agg_inflight[idx], 1);
		}
	}
	return idx > 2 ? 0 : idx;
}

static __always_inline void agg_leave(u32 idx)
{
	if (idx <= 2)
		__sync_fetch_and_add(&agg_inflight[idx], -1);
}

/* Add to aggregation map idx (taken with agg_enter); false (counted) if
 * it is full. */
static __always_inline bool agg_add_in(u32 active, struct agg_key *key, u64 count, u64 blocked, u64 runq,
				       u64 bytes)
{
	void *agg = &agg0;
	if (active == 1)
		agg = &agg1;
	else if (active == 2)
		agg = &agg2;
	struct agg_val *v = bpf_map_lookup_elem(agg, key);
	if (!v) {
		struct agg_val zero = {};
		bpf_map_update_elem(agg, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(agg, key);
		if (!v) {
			drop(DROP_AGG_FULL, count);
			drop(DROP_AGG_FULL_NS, blocked + runq);
			return false;
		}
	}
	__sync_fetch_and_add(&v->count, count);
	__sync_fetch_and_add(&v->blocked_ns, blocked);
	__sync_fetch_and_add(&v->runqueue_ns, runq);
	if (bytes)
		__sync_fetch_and_add(&v->bytes, bytes);
	return true;
}

/* Add to the active aggregation map; false (counted) if it is full. */
static __always_inline bool agg_add(struct agg_key *key, u64 count, u64 blocked, u64 runq, u64 bytes)
{
	u32 active = agg_enter();
	bool ok = agg_add_in(active, key, count, blocked, runq, bytes);
	agg_leave(active);
	return ok;
}

/* Close thread t's open interval at now (it is running again) and add it
 * to the active map. */
static __always_inline void close_interval(struct task_struct *t, struct task_state *st, u64 now,
					   u32 cut)
{
	u64 out = st->ts_out, wake = st->ts_wake;
	st->ts_out = 0;
	if (counting_until && now > counting_until)
		now = counting_until;
	if (now <= out)
		return;
	bool woken = wake && wake >= out && wake <= now;
	if (st->kind == KIND_PREEMPTED_SLEEPING) {
		/* Preempted on its way to sleep: runnable all along, but waiting
		 * in its syscall from the moment it was woken (if it was). */
		if (!wake || wake < out || wake > now)
			wake = out;
	} else if (!wake || wake < out || wake > now) {
		wake = now; /* woken before we saw it (e.g. at attach): all blocked */
	}

	u64 blocked = wake - out, runq = now - wake;
	if (st->kind == KIND_PREEMPTED) {
		/* Preempted: runnable the whole time. */
		runq = now - out;
		blocked = 0;
	} else if (blocked < cfg_min_block_ns || (cfg_max_block_ns && blocked > cfg_max_block_ns)) {
		drop(DROP_FILTERED, 1);
		return;
	}

	struct agg_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.tgid = t->tgid;
	key.tid = t->pid;
	key.ustack = st->ustack;
	key.kstack = st->kstack;
	key.state = st->state;
	key.kind = st->kind == KIND_PREEMPTED ? KIND_PREEMPTED : KIND_BLOCKED;
	key.sysnr = st->sysnr;
	key.fd = st->fd;
	key.tkind = st->tkind;
	key.ta = st->ta;
	key.tb = st->tb;
	key.waker_ustack = -1;
	key.waker_kstack = -1;
	if (cfg_wakers && woken) {
		key.waker_kind = st->waker_kind;
		key.waker_tgid = st->waker_tgid;
		key.waker_tid = st->waker_tid;
		key.waker_ustack = st->waker_ustack;
		key.waker_kstack = st->waker_kstack;
		__builtin_memcpy(key.waker_comm, st->waker_comm, TASK_COMM_LEN);
	}
	key.pystack = st->pystack;
	key.uhash = st->uhash;
	key.loop_seq = st->out_seq;
	key.cut = st->cut | cut;
	st->cut = 0;
	/* Off-CPU time inside a loop iteration: the rest of it ran on CPU. */
	if (st->out_seq && st->out_seq == st->loop_seq)
		st->iter_off += blocked + runq;

	/* The interval and its histogram go to maps of the same index, so
	 * one drain reads both. */
	u32 active = agg_enter();
	if (agg_add_in(active, &key, 1, blocked, runq, st->bytes) && key.kind == KIND_BLOCKED)
		record_latency(active, &key, blocked + runq);
	agg_leave(active);
}

/* next is about to run: close its interval, if it has one. */
static __always_inline void switch_in(struct task_struct *next)
{
	if (!tgid_is_target(next))
		return;
	struct task_state *st = bpf_task_storage_get(&tstate, next, 0, 0);
	if (!st || !st->ts_out)
		return;
	close_interval(next, st, bpf_ktime_get_ns(), 0);
}

static __always_inline void name_thread(struct task_struct *t, struct task_state *st)
{
	struct thread_info info = { .tgid = t->tgid };
	u32 tid = t->pid;

	BPF_CORE_READ_STR_INTO(&info.comm, t, comm);
	BPF_CORE_READ_STR_INTO(&info.leader_comm, t, group_leader, comm);
	if (bpf_map_update_elem(&threads, &tid, &info, BPF_ANY))
		drop(DROP_THREADS_FULL, 1);
	st->named = true;
}

/* The kernel stack walk (ORC) is most of the cost of a switch-out: about
 * 1 us of 1.5 us measured on a pipe ping-pong. A thread that blocks again with
 * the same user stack, in the same syscall on the same first argument (fd)
 * and in the same state, is blocking on the same kernel path: reuse the
 * stack id taken last time. Time sums stay exact; only the rare case of one
 * call site blocking at two kernel places is merged into the first. */
static __always_inline s32 kernel_stack(void *ctx, struct task_state *st, u32 state, s64 nr,
					 u64 arg0)
{
	if (!cfg_reuse_kstack)
		return stack_id(ctx, &kstacks, 0, DROP_KSTACK_COLLISION, DROP_KSTACK_ERROR);

	/* The user stack's identity: its stack-map id, or its unwound hash. */
	u64 user = st->uhash ? st->uhash : st->ustack >= 0 ? (u64)st->ustack + 1 : 0;
	if (st->last_kstack >= 0 && user && user == st->last_ustack &&
	    state == st->last_state && nr == st->last_sysnr && arg0 == st->last_arg0)
		return st->last_kstack;

	s32 id = stack_id(ctx, &kstacks, 0, DROP_KSTACK_COLLISION, DROP_KSTACK_ERROR);
	st->last_ustack = user;
	st->last_kstack = id;
	st->last_state = state;
	st->last_sysnr = nr;
	st->last_arg0 = arg0;
	return id;
}

/* x86-64 syscalls whose first argument is the fd they may block on. */
static __always_inline bool fd_syscall(s64 nr)
{
	switch (nr) {
	case 0: case 1: case 16: case 17: case 18: case 19: case 20: /* read write ioctl pread pwrite readv writev */
	case 42: case 43: case 44: case 45: case 46: case 47:        /* connect accept sendto recvfrom sendmsg recvmsg */
	case 73: case 74: case 75: case 77: case 285:                /* flock fsync fdatasync ftruncate fallocate */
	case 277: case 288: case 295: case 296: case 299:            /* sync_file_range accept4 preadv pwritev recvmmsg */
	case 307: case 327: case 328:                                /* sendmmsg preadv2 pwritev2 */
	case 40: case 72: case 217: case 275: case 306: case 326:    /* sendfile fcntl getdents64 splice syncfs copy_file_range */
		return true;
	}
	return false;
}

#define S_IFMT 0170000
#define S_IFSOCK 0140000

/* The struct file behind fd of task t, NULL if none. */
static __always_inline struct file *fd_file(struct task_struct *t, s32 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || (u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

/* Describe what file `fd` of task t is, once per (file, inode): path parts
 * up to the root (crossing mounts), or a socket's addresses. */
static __always_inline bool resolve_fd(struct task_struct *t, s32 fd, struct fd_key *key,
				       struct task_struct *remote)
{
	struct file *f = fd_file(t, fd);
	if (!f)
		return false;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	key->file = (u64)f;
	key->ino = BPF_CORE_READ(inode, i_ino);
	if (bpf_map_lookup_elem(&fd_targets, key))
		return true; /* known already: the common case costs one lookup */

	u32 slot = scratch_slot(remote);
	struct fd_target *d = bpf_map_lookup_elem(&fd_scratch, &slot);
	if (!d)
		return false;
	__builtin_memset(d, 0, sizeof(*d));
	d->mode = BPF_CORE_READ(inode, i_mode);
	d->ino = key->ino;

	if ((d->mode & S_IFMT) == S_IFSOCK) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);
		d->family = BPF_CORE_READ(sk, __sk_common.skc_family);
		d->sotype = BPF_CORE_READ(sk, sk_type);
		d->protocol = BPF_CORE_READ(sk, sk_protocol);
		d->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		d->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		/* Sized reads: the destinations are byte arrays. */
		if (d->family == 2 /* AF_INET */) {
			bpf_core_read(d->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
			bpf_core_read(d->raddr, 4, &sk->__sk_common.skc_daddr);
		} else if (d->family == 10 /* AF_INET6 */) {
			bpf_core_read(d->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			bpf_core_read(d->raddr, 16, &sk->__sk_common.skc_v6_daddr);
		} else if (d->family == 1 /* AF_UNIX */) {
			/* The socket's own name, or its peer's (a client is
			 * usually unnamed; the server it reached is not). */
			struct unix_sock *us = (void *)sk;
			struct unix_address *ua = BPF_CORE_READ(us, addr);
			if (!ua) {
				struct unix_sock *peer = (void *)BPF_CORE_READ(us, peer);
				if (peer) {
					ua = BPF_CORE_READ(peer, addr);
					d->unix_peer = 1;
				}
			}
			if (ua) {
				void *name = (void *)ua + bpf_core_field_offset(struct unix_address, name);
				/* sun_path follows the 2-byte family; abstract names start with 0. */
				bpf_probe_read_kernel(d->parts, 108, name + 2);
				d->flat = 1;
			}
		}
	} else {
		struct dentry *de = BPF_CORE_READ(f, f_path.dentry);
		struct vfsmount *vmnt = BPF_CORE_READ(f, f_path.mnt);
		struct mount *mnt = (void *)vmnt - bpf_core_field_offset(struct mount, mnt);
		u32 n = 0;
		for (int i = 0; i < PATH_PARTS + 4; i++) {
			struct dentry *parent = BPF_CORE_READ(de, d_parent);
			struct dentry *root = BPF_CORE_READ(mnt, mnt.mnt_root);
			if (de == root || de == parent) {
				/* At the top of this mount: continue in the parent mount. */
				struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
				if (up == mnt || !up)
					break;
				de = BPF_CORE_READ(mnt, mnt_mountpoint);
				mnt = up;
				continue;
			}
			if (n >= PATH_PARTS) {
				d->truncated = 1;
				break;
			}
			const unsigned char *name = BPF_CORE_READ(de, d_name.name);
			bpf_probe_read_kernel_str(d->parts[n & (PATH_PARTS - 1)], PART_LEN, name);
			n++;
			de = parent;
		}
		d->nparts = n;
	}
	bpf_map_update_elem(&fd_targets, key, d, BPF_ANY);
	return true;
}

/* Where syscall nr keeps its path argument: 1 + the argument index, or 0. */
static __always_inline int path_arg_index(s64 nr)
{
	switch (nr) {
	case 2: case 4: case 6: case 21: case 59: case 76: case 80: case 82: /* open stat lstat access execve truncate chdir rename */
	case 83: case 84: case 85: case 86: case 87: case 89: case 90: case 92: /* mkdir rmdir creat link unlink readlink chmod chown */
	case 94: case 133: case 137: case 188: case 191: case 192: /* lchown mknod statfs setxattr getxattr lgetxattr */
		return 1;
	case 88: /* symlink: the link made */
	case 257: case 258: case 259: case 260: case 262: case 263: case 264: case 265: /* openat mkdirat mknodat fchownat newfstatat unlinkat renameat linkat */
	case 267: case 268: case 269: case 280: case 316: case 322: case 332: case 437: /* readlinkat fchmodat faccessat utimensat renameat2 execveat statx openat2 */
	case 439: case 452: /* faccessat2 fchmodat2 */
		return 2;
	case 266: /* symlinkat */
		return 3;
	}
	return 0;
}

/* A user timespec as nanoseconds; false if unreadable. */
static __always_inline bool read_timespec(u64 uaddr, s64 *ns, struct task_struct *remote)
{
	struct { s64 sec, nsec; } ts;
	if (read_user(&ts, sizeof(ts), (void *)uaddr, remote))
		return false;
	*ns = ts.sec * 1000000000LL + ts.nsec;
	return true;
}

/* Round to the millisecond above 1 ms, so that deadlines (which differ by
 * a few microseconds every call) still aggregate. */
static __always_inline u64 round_ms(u64 ns)
{
	if (ns < 1000000)
		return ns;
	return (ns + 500000) / 1000000 * 1000000;
}

static __always_inline bool path_target(u64 uaddr, struct task_state *st, struct task_struct *remote)
{
	u32 slot = scratch_slot(remote);
	struct path_arg *pa = bpf_map_lookup_elem(&path_scratch, &slot);
	if (!pa)
		return false;
	/* Zero first: the hash covers the whole buffer, and the map value
	 * must be a clean string. */
	__builtin_memset(pa, 0, sizeof(*pa));
	if (remote) {
		/* No string copy from another task: read the whole buffer,
		 * or up to the end of the string's page when the buffer runs
		 * past it into an unmapped one. */
		if (read_user(pa->path, sizeof(pa->path), (void *)uaddr, remote)) {
			u32 n = 4096 - (uaddr & 4095);
			if (n >= sizeof(pa->path) || read_user(pa->path, n, (void *)uaddr, remote))
				return false;
		}
		pa->path[PATH_ARG_LEN - 1] = 0;
	} else {
		long n = bpf_probe_read_user_str(pa->path, sizeof(pa->path), (void *)uaddr);
		if (n <= 0)
			return false;
	}
	/* Hash word by word, without a branch per byte: a byte loop with an
	 * end test made the verifier walk ~250k instructions (200 ms of
	 * attach time). */
	u64 *w = (u64 *)pa->path;
	u64 h = 0xcbf29ce484222325ULL;
	bool ended = false;
	for (int i = 0; i < PATH_ARG_LEN / 8; i++) {
		if (remote) {
			/* Clear what follows the string's NUL (it was read
			 * too): the lowest zero byte of a word is the first
			 * bit the classic has-zero test sets. */
			u64 z = (w[i] - 0x0101010101010101ULL) & ~w[i] & 0x8080808080808080ULL;
			if (ended)
				w[i] = 0;
			else if (z) {
				w[i] &= ((z & -z) >> 7) - 1;
				ended = true;
			}
		}
		h = (h ^ w[i]) * 0x100000001b3ULL;
	}
	st->tkind = TK_PATH;
	st->ta = h;
	if (!bpf_map_lookup_elem(&path_args, &h))
		bpf_map_update_elem(&path_args, &h, pa, BPF_ANY);
	return true;
}

/* What syscall nr waits on, from its arguments: fd targets, paths,
 * futexes, sleeps, polls, children. Runs in the blocking thread's own
 * context, so its user memory is at hand (a page not resident makes the
 * read fail: counted, never guessed). */
static __always_inline void resolve_target(struct task_struct *t, struct pt_regs *regs, s64 nr,
					   struct task_state *st, struct task_struct *remote)
{
	u64 a0 = BPF_CORE_READ(regs, di), a1 = BPF_CORE_READ(regs, si);
	u64 a2 = BPF_CORE_READ(regs, dx), a3 = BPF_CORE_READ(regs, r10);
	s64 ns;

	if (fd_syscall(nr)) {
		struct fd_key fk = {};
		st->fd = (s32)a0;
		if (resolve_fd(t, (s32)a0, &fk, remote)) {
			st->tkind = TK_FD;
			st->ta = fk.file;
			st->tb = fk.ino;
		} else {
			drop(DROP_FD_UNREADABLE, 1);
		}
		switch (nr) {
		case 0: case 1: case 17: case 18: case 44: case 45: /* read write pread pwrite sendto recvfrom */
			st->bytes = a2;
		}
		return;
	}
	int pi = path_arg_index(nr);
	if (pi) {
		u64 uaddr = pi == 1 ? a0 : pi == 2 ? a1 : a2;
		if (!path_target(uaddr, st, remote))
			goto unreadable;
		return;
	}
	switch (nr) {
	case 202: /* futex: which word, and what for */
		st->tkind = TK_FUTEX;
		st->ta = a0;
		/* The command, without FUTEX_PRIVATE_FLAG and CLOCK_REALTIME;
		 * FUTEX_TIMED when a wait has a timeout (condition variable
		 * waits of idle pool workers have none; the GIL's have). */
		st->tb = (a1 & 0x7f) | (a3 ? FUTEX_TIMED : 0);
		return;
	case 35: /* nanosleep(req, rem) */
		if (!read_timespec(a0, &ns, remote))
			goto unreadable;
		st->tkind = TK_SLEEP;
		st->ta = ns;
		return;
	case 230: /* clock_nanosleep(clock, flags, req, rem) */
		if (!read_timespec(a2, &ns, remote))
			goto unreadable;
		st->tkind = TK_SLEEP;
		if (!(a1 & 1 /* TIMER_ABSTIME */)) {
			st->ta = ns;
		} else if (a0 == 1 /* CLOCK_MONOTONIC */ || a0 == 7 /* CLOCK_BOOTTIME */) {
			u64 now = a0 == 1 ? bpf_ktime_get_ns() : bpf_ktime_get_boot_ns();
			st->ta = (u64)ns > now ? round_ms(ns - now) : 0;
			st->tb = SLEEP_ABSOLUTE;
		} else {
			st->tb = SLEEP_ABSOLUTE | SLEEP_UNKNOWN;
		}
		return;
	case 7: /* poll(fds, nfds, timeout_ms) */
		st->tkind = TK_POLL;
		st->ta = a1;
		st->tb = (s32)a2 < 0 ? (u64)-1 : round_ms((u64)(s32)a2 * 1000000);
		return;
	case 232: case 281: /* epoll_wait, epoll_pwait(epfd, events, maxevents, timeout_ms) */
		st->fd = (s32)a0;
		st->tkind = TK_POLL;
		st->ta = a2;
		st->tb = (s32)a3 < 0 ? (u64)-1 : round_ms((u64)(s32)a3 * 1000000);
		return;
	case 271: case 441: /* ppoll(fds, nfds, tsp), epoll_pwait2(epfd, events, maxevents, tsp) */
	case 23: case 270: { /* select, pselect6(nfds, r, w, e, tvp/tsp) */
		u64 tsp = nr == 271 ? a2 : nr == 441 ? a3 : BPF_CORE_READ(regs, r8);
		st->tkind = TK_POLL;
		st->ta = nr == 271 ? a1 : nr == 441 ? a2 : a0;
		if (nr == 441)
			st->fd = (s32)a0;
		st->tb = (u64)-1;
		if (tsp) {
			if (!read_timespec(tsp, &ns, remote))
				goto unreadable;
			u64 uns = ns < 0 ? 0 : ns;
			if (nr == 23) /* a timeval: microseconds in the second word */
				uns = (uns / 1000000000ULL) * 1000000000ULL + (uns % 1000000000ULL) * 1000;
			st->tb = round_ms(uns);
		}
		return;
	}
	case 61: /* wait4(pid, ...) */
		st->tkind = TK_CHILD;
		st->ta = (s64)(s32)a0;
		st->tb = (u64)-1;
		return;
	case 247: /* waitid(idtype, id, ...) */
		st->tkind = TK_CHILD;
		st->ta = (s64)(s32)a1;
		st->tb = a0;
		return;
	}
	return;
unreadable:
	st->tkind = TK_UNREADABLE;
	drop(DROP_ARG_UNREADABLE, 1);
}

static __always_inline bool syscall_allowed(s64 nr)
{
	if (nr < 0)
		return cfg_allow_nosyscall;
	if (nr >= 512)
		return false;
	return cfg_syscall_mask[(nr >> 6) & 7] & (1ULL << (nr & 63));
}

/* FNV-style hash over the frames of a walk, one frame per bpf_loop step
 * (an unrolled loop with an end test costs the verifier dearly). */
struct unw_hash {
	struct unw_stack *s;
	u64 h;
};

static long unw_hash_step(u64 i, struct unw_hash *hs)
{
	if (!hs->s)
		return 1;
	hs->h = (hs->h ^ hs->s->pcs[i & (UNW_MAX_FRAMES - 1)]) * 0x100000001b3ULL;
	return 0;
}

/* Walk t's user stack with the unwind tables and keep it in unw_stacks
 * under a hash of its frames; returns the hash (0: no stack). */
static __always_inline u64 unwound_stack(struct task_struct *t, struct task_struct *remote)
{
	struct unw_stack *s = unw_user_stack(t, remote);
	if (!s || s->n == 0) {
		drop(DROP_USTACK_ERROR, 1);
		return 0;
	}
	if (s->pending)
		drop(DROP_UNWIND_PENDING, 1);
	if (s->status == UNW_TRUNCATED)
		drop(DROP_UNWIND_TRUNCATED, 1);
	else if (s->table_frames &&
		 (s->status == UNW_UNSUPPORTED || s->status == UNW_READ_FAULT || s->status == UNW_BAD_FRAME))
		/* Cut short after tables were in use. A walk on frame pointers
		 * alone ends like this whenever code lacks them, as it always
		 * did: not counted. */
		drop(DROP_UNWIND_PARTIAL, 1);
	struct unw_hash hs = { .s = s, .h = (0xcbf29ce484222325ULL ^ s->n) + s->pending };
	bpf_loop(s->n & (UNW_MAX_FRAMES * 2 - 1), unw_hash_step, &hs, 0);
	u64 h = hs.h;
	if (!h)
		h = 1;
	if (!bpf_map_lookup_elem(&unw_stacks, &h))
		bpf_map_update_elem(&unw_stacks, &h, s, BPF_ANY);
	return h;
}

/* A loop thread between two calls of its loop wait (see "Event loops"). */
static __always_inline bool in_loop_iteration(struct task_struct *t)
{
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, 0);
	return st && st->loop_seq;
}

/* The user stack of t, into key: table-unwound or from frame pointers. */
static __always_inline void user_stack(void *ctx, struct task_struct *t, s32 *ustack, u64 *uhash)
{
	*uhash = 0;
	if (!cfg_user_stacks)
		*ustack = -1;
	else if (!t->mm)
		*ustack = -3; /* ESRCH: exiting thread, its user memory is gone: nothing lost */
	else if (cfg_unwind) {
		*ustack = -1;
		*uhash = unwound_stack(t, NULL);
	} else
		*ustack = stack_id(ctx, &ustacks, BPF_F_USER_STACK, DROP_USTACK_COLLISION,
				   DROP_USTACK_ERROR);
}

/* The syscall a task is in, from the user registers saved at its kernel
 * entry, -1 for none. orig_ax holds the number after a syscall entry but
 * an exception's error code after a fault; syscall entry also parks
 * -ENOSYS in ax until the syscall returns, which tells the two apart. */
static __always_inline s64 syscall_of(struct pt_regs *regs)
{
	s64 nr = BPF_CORE_READ(regs, orig_ax);
	return (s64)BPF_CORE_READ(regs, ax) == -38 /* -ENOSYS */ ? nr : -1;
}

/* Describe the interval thread t opens: kind, state, syscall and, with
 * targets on, what it waits on (remote: t is another task, see
 * read_user). Stacks and the switch-out time are the caller's. */
static __always_inline void describe_interval(struct task_struct *t, struct task_state *st, struct pt_regs *regs,
					      u32 kind, u32 state, s64 nr, struct task_struct *remote)
{
	st->kind = kind;
	st->cut = 0;
	st->state = state;
	st->sysnr = nr;
	st->fd = -1;
	st->tkind = TK_NONE;
	st->ta = 0;
	st->tb = 0;
	st->bytes = 0;
	st->waker_kind = WAKER_NONE;
	if (cfg_targets && nr >= 0)
		resolve_target(t, regs, nr, st, remote);
	st->ts_wake = 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(bprof_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	switch_in(next);

	if (!is_target(prev))
		return 0;
	if (counting_until)
		return 0; /* the window is over: nothing opens now */

	u32 kind = KIND_BLOCKED;
	if (prev_state == 0) {
		/* Preempted while running: not waiting on anything. Loop mode
		 * keeps it inside a loop iteration: the loop was stalled, if
		 * only waiting for a CPU. */
		if (!cfg_preempted && !(cfg_loop && in_loop_iteration(prev)))
			return 0;
		kind = KIND_PREEMPTED;
	} else if (preempt) {
		/* Preempted between setting a sleeping state and calling
		 * schedule(): the thread stays runnable, and if its wakeup
		 * comes before it runs again it never sleeps at all. Without
		 * this, a sleep that ends while the thread waits for a CPU
		 * would vanish from the profile. */
		kind = KIND_PREEMPTED_SLEEPING;
	}
	/* TASK_DEAD (0x80): the thread is exiting and will not come back. */
	if (prev_state & 0x80)
		return 0;

	/* The user registers saved at kernel entry: which syscall, on what. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(prev);
	s64 nr = syscall_of(regs);
	if (cfg_filter_syscalls && !syscall_allowed(nr))
		return 0;

	struct task_state *st =
		bpf_task_storage_get(&tstate, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		drop(DROP_STORAGE, 1);
		return 0;
	}
	if (!st->named) {
		name_thread(prev, st);
		st->last_kstack = -1;
		/* Once per thread and exec: no cost on the switch path. A
		 * short-lived child's mappings are read at its first block. */
		if (cfg_follow_children && prev->pid == prev->tgid)
			proc_event(PROC_BLOCKED, prev->tgid, 0);
	}

	if (st->ts_out) {
		/* The last interval was never closed: the thread is running
		 * again, but no switch-in of it was seen (rare; see README,
		 * Limitations). Recover when it came back from its CPU time:
		 * the scheduler's sum_exec_runtime grew by exactly the time it
		 * ran since, so it switched in at now - that. Blocked time is
		 * exact when its wakeup was seen; otherwise all of the
		 * interval counts as blocked. */
		u64 now = bpf_ktime_get_ns();
		u64 ran = prev->se.sum_exec_runtime - st->exec_out;
		if (now > st->ts_out + ran) {
			close_interval(prev, st, now - ran, 0);
			drop(DROP_SWITCHIN_MISSED, 1);
		} else {
			drop(DROP_UNCLOSED, 1);
		}
	}
	describe_interval(prev, st, regs, kind, prev_state, nr, NULL);
	user_stack(ctx, prev, &st->ustack, &st->uhash);
	st->kstack = cfg_kernel_stacks ? kernel_stack(ctx, st, prev_state, nr, BPF_CORE_READ(regs, di)) : -1;
	st->pystack = py_stack_id(prev, NULL);
	st->exec_out = prev->se.sum_exec_runtime;
	st->out_seq = st->loop_seq;
	/* Last, so the interval starts as close to the switch as possible. */
	st->ts_out = bpf_ktime_get_ns();
	return 0;
}

/* Who is waking: the current task, or an interrupt running on top of it
 * (then "current" is just whoever was interrupted). The preempt count would
 * say, but it is a per-CPU variable, and without CONFIG_KALLSYMS_ALL the
 * kernel cannot link a BPF reference to it. The stacks tell instead:
 *  - BPF programs run on the stack of the context that called them, and on
 *    x86-64 interrupts and softirqs that arrive in kernel mode run on the
 *    CPU's interrupt stack, not the task's;
 *  - an interrupt that arrives in user mode runs on the task stack, but
 *    then the task's saved user registers are an interrupt frame
 *    (orig_ax = -1 or ~vector), not a syscall's (orig_ax = its number). */
static __always_inline u32 waker_context(struct task_struct *cur)
{
	u64 sp;
	asm volatile("%0 = r10" : "=r"(sp));
	u64 lo = (u64)BPF_CORE_READ(cur, stack);
	/* 32 KiB: the largest THREAD_SIZE x86-64 builds with (KASAN). */
	if (sp < lo || sp >= lo + 32768)
		return WAKER_IRQ;
	if (cur->flags & PF_KTHREAD)
		return WAKER_TASK; /* kworker, ksoftirqd...: no user frame */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(cur);
	if ((s64)BPF_CORE_READ(regs, orig_ax) < 0)
		return WAKER_IRQ;
	return WAKER_TASK;
}

/* sched_waking runs in the waker's context (sched_wakeup may run later, on
 * the wakee's CPU), so this is where the waker is known. */
SEC("tp_btf/sched_waking")
int BPF_PROG(bprof_wakeup, struct task_struct *p)
{
	if (!tgid_is_target(p))
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, p, 0, 0);
	if (!st || !st->ts_out || st->ts_wake)
		return 0;
	st->ts_wake = bpf_ktime_get_ns();
	if (!cfg_wakers)
		return 0;

	struct task_struct *cur = bpf_get_current_task_btf();
	u32 wk = waker_context(cur);
	st->waker_kind = wk;
	st->waker_tgid = 0;
	st->waker_tid = 0;
	st->waker_ustack = -1;
	st->waker_kstack = -1;
	__builtin_memset(st->waker_comm, 0, TASK_COMM_LEN);
	if (wk == WAKER_TASK) {
		st->waker_tgid = cur->tgid;
		st->waker_tid = cur->pid;
		bpf_get_current_comm(st->waker_comm, TASK_COMM_LEN);
		/* The waker's user stack is only worth its cost (and only
		 * symbolizable) when the waker is part of the same process. */
		if (cfg_waker_stacks && cur->tgid == p->tgid && cur->mm)
			st->waker_ustack = stack_id(ctx, &ustacks, BPF_F_USER_STACK,
						    DROP_USTACK_COLLISION, DROP_USTACK_ERROR);
	}
	if (cfg_waker_stacks)
		st->waker_kstack = stack_id(ctx, &wkstacks, 0, DROP_KSTACK_COLLISION,
					    DROP_KSTACK_ERROR);
	return 0;
}

/* A forked child has its parent's mappings: give it the parent's unwind
 * mapping list at once (user space replaces it once it has looked, after
 * an exec for instance), so its first stacks unwind too. */
static __always_inline void inherit_unwind(u32 ptgid, u32 ctgid)
{
	u32 *n = bpf_map_lookup_elem(&unw_procs, &ptgid);
	if (!n)
		return;
	u32 count = *n;
	for (u32 i = 0; i < UNW_MAX_MAPPINGS && i < count; i++) {
		struct unw_mapping_key pk = { .tgid = ptgid, .idx = i }, ck = { .tgid = ctgid, .idx = i };
		struct unw_mapping *m = bpf_map_lookup_elem(&unw_mappings, &pk);
		if (!m || bpf_map_update_elem(&unw_mappings, &ck, m, BPF_ANY))
			return;
	}
	bpf_map_update_elem(&unw_procs, &ctgid, &count, BPF_ANY);
}

/* With -- CMD, the command's children become targets as they fork. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(bprof_fork, struct task_struct *parent, struct task_struct *child)
{
	if (!cfg_follow_children)
		return 0;
	u32 ptgid = parent->tgid, ctgid = child->tgid;
	if (ptgid == ctgid || !tgid_is_target(parent))
		return 0;
	u8 one = TARGET_LIVE;
	if (bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY)) {
		drop(DROP_TARGETS_FULL, 1);
		return 0;
	}
	if (cfg_unwind)
		inherit_unwind(ptgid, ctgid);
	proc_event(PROC_FORK, ctgid, ptgid);
	return 0;
}

/* Deletes unw_mappings[{tgid, i}], one per bpf_loop step. */
struct unw_release {
	u32 tgid;
};

static long unw_release_step(u64 i, struct unw_release *r)
{
	struct unw_mapping_key k = { .tgid = r->tgid, .idx = (u32)i };
	bpf_map_delete_elem(&unw_mappings, &k);
	return 0;
}

/* Forget tgid's unwind mapping list: walks use frame pointers (marked
 * pending) until user space loads the new one. */
static __always_inline void release_unwind(u32 tgid)
{
	u32 *n = bpf_map_lookup_elem(&unw_procs, &tgid);
	if (!n)
		return;
	struct unw_release r = { .tgid = tgid };
	u32 count = *n;
	bpf_map_delete_elem(&unw_procs, &tgid);
	bpf_loop(count < UNW_MAX_MAPPINGS ? count : UNW_MAX_MAPPINGS, unw_release_step, &r, 0);
}

/* exec renames the process: take the thread's names again at its next
 * switch-out (with -- CMD, the first ones are the exec gate's). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(bprof_exec)
{
	struct task_struct *t = bpf_get_current_task_btf();
	u32 tgid = t->tgid;
	u8 *v = bpf_map_lookup_elem(&targets, &tgid);
	if (!v)
		return 0;
	if (*v == TARGET_AWAIT_EXEC)
		*v = TARGET_LIVE;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, 0);
	if (st)
		st->named = false;
	/* The mapping list (inherited at fork, or loaded) describes the
	 * old image: walked with it, the new one's stacks were garbage. */
	if (cfg_unwind)
		release_unwind(tgid);
	if (cfg_follow_children)
		proc_event(PROC_EXEC, tgid, 0);
	return 0;
}

/* A followed process is gone: release what it held in the per-process
 * maps (target, Python offsets, unwind mapping list), so that churn of
 * short-lived children never fills them. Every thread exit passes here,
 * never a context switch: a non-target leaves after one lookup, a thread
 * of a target that is not its group's last after one more read. The last
 * thread, not the leader: a leader may exit (pthread_exit) before its
 * threads. signal->live reached 0 before this tracepoint fired (do_exit
 * decrements it first, every kernel since 2.6); 6.16+ also passes
 * group_dead, which older kernels lack. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(bprof_exit, struct task_struct *t)
{
	if (!cfg_release_exited)
		return 0; /* fixed targets: user space ends when they exit */
	u32 tgid = t->tgid;
	if (!bpf_map_lookup_elem(&targets, &tgid))
		return 0;
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	bpf_map_delete_elem(&targets, &tgid);
	if (cfg_python)
		bpf_map_delete_elem(&py_targets, &tgid);
	if (cfg_unwind)
		release_unwind(tgid);
	proc_event(PROC_EXIT, tgid, 0);
	return 0;
}

/* ---- Event loops ----
 * A loop thread alternates between its loop wait (epoll_wait, poll...) and
 * an iteration: the callbacks that run from the wait's return to its next
 * call. The wait syscalls' entry and exit tracepoints (only those run
 * BPF) time every iteration; one longer than cfg_loop_stall_ns is a
 * stall. Whatever happens inside an iteration (off-CPU intervals,
 * on-CPU samples) goes to the aggregation maps tagged with the
 * iteration's number, and each stall to loop_events. User space keeps the
 * tagged records of stalls and drops the others: nothing is buffered per
 * iteration in the kernel, and a stall of any length is complete.
 *
 * Which wait is the loop's is learnt per thread: its waits vote (a
 * Boyer-Moore majority) on their identity, the syscall's class and its
 * first argument (the epoll fd; the pollfd array or fd set address). A
 * loop calls its own wait far more often than code inside a callback does
 * (a socket with a timeout polls; Node's execSync runs a private epoll),
 * and once a thread has used epoll, only its epoll waits vote.
 */
#define LOOP_CLASS_EPOLL 1
#define LOOP_CLASS_POLL 2
#define LOOP_CLASS_SELECT 3
#define LOOP_PROMOTE 4    /* votes that make a poll or select the loop's wait */
#define LOOP_PROMOTE_EPOLL 2 /* ... an epoll wait: few threads call one twice but loops */
#define LOOP_VOTES_MAX 64 /* another wait must outvote the loop's by this much */
#define LOOP_SEEN_EPOLL 1
#define LOOP_IN_WAIT 2    /* inside a call of the loop wait */

/* Any threads named with --loop-thread (cfg_loop_auto off: only those). */
volatile const bool cfg_loop_explicit = 0;

/* tid -> 1: loop threads named by the user (elected at their first wait). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u8);
} loop_tids SEC(".maps");

/* tid -> the wait a thread was blocked in when loop mode attached (from
 * /proc/PID/task/TID/syscall): its return starts the first iteration, so
 * a quiet loop is measured from its first wakeup on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, u64);
} loop_hints SEC(".maps");

/* tid -> what user space reads about each loop thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct loop_stats);
} loop_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} loop_ring SEC(".maps");

const volatile struct loop_stats loop_zero = {};

static __always_inline u32 loop_bucket(u64 ns)
{
	if (ns < (1 << LOOP_SUB_BITS))
		return ns;
	u32 msb = log2_u64(ns);
	u32 sub = (ns >> (msb - LOOP_SUB_BITS)) & ((1 << LOOP_SUB_BITS) - 1);
	return ((msb << LOOP_SUB_BITS) | sub) & (LOOP_HIST - 1);
}

static __always_inline void loop_event(u32 kind, struct task_struct *t, struct task_state *st,
				       u32 seq, u64 start, u64 end, s32 sysnr)
{
	struct loop_event *e = bpf_ringbuf_reserve(&loop_ring, sizeof(*e), 0);
	if (!e) {
		drop(DROP_LOOP_EVENT, 1);
		return;
	}
	e->kind = kind;
	e->tgid = t->tgid;
	e->tid = t->pid;
	e->seq = seq;
	e->wait = st->loop_wait;
	e->start = start;
	e->end = end;
	e->off_ns = st->iter_off;
	e->sysnr = sysnr;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
}

/* Wait id becomes t's loop wait: an iteration in progress is abandoned
 * (it began under another wait), and user space is told to sample t. */
static __always_inline void loop_elect(struct task_struct *t, struct task_state *st, u64 id, s32 nr)
{
	u32 tid = t->pid;
	struct loop_stats *ls = bpf_map_lookup_elem(&loop_threads, &tid);
	if (!ls) {
		bpf_map_update_elem(&loop_threads, &tid, (void *)&loop_zero, BPF_NOEXIST);
		ls = bpf_map_lookup_elem(&loop_threads, &tid);
		if (!ls) {
			drop(DROP_LOOP_STATS_FULL, 1);
			return;
		}
	}
	st->loop_wait = id;
	st->loop_seq = 0;
	st->loop_file = id >> 56 == LOOP_CLASS_EPOLL ? (u64)fd_file(t, (s32)(u32)id) : 0;
	ls->tgid = t->tgid;
	ls->tid = tid;
	ls->wait = id;
	ls->sysnr = nr;
	ls->in_iter = 0;
	ls->done_seq = st->loop_next;
	loop_event(LOOP_EV_FOUND, t, st, 0, 0, 0, nr);
}

/* The loop wait is called again: the iteration ends. */
static __always_inline void loop_end_iteration(struct task_struct *t, struct task_state *st, u64 now)
{
	u32 tid = t->pid;
	struct loop_stats *ls = bpf_map_lookup_elem(&loop_threads, &tid);
	u64 d = now > st->iter_start ? now - st->iter_start : 0;
	if (d >= cfg_loop_stall_ns)
		loop_event(LOOP_EV_STALL, t, st, st->loop_seq, st->iter_start, now, 0);
	if (ls) {
		/* Only this thread writes its entry: no atomics needed. */
		ls->iterations++;
		ls->total_ns += d;
		if (d > ls->max_ns)
			ls->max_ns = d;
		ls->hist[loop_bucket(d)]++;
		if (d >= cfg_loop_stall_ns)
			ls->stalls++;
		/* After the event: user space that reads done_seq finds the
		 * stall in the ring. */
		ls->done_seq = st->loop_seq;
		ls->in_iter = 0;
	}
	st->loop_seq = 0;
}

static __always_inline int loop_wait_enter(u64 arg0, u64 arg1, u32 cls, s32 nr)
{
	struct task_struct *t = bpf_get_current_task_btf();
	if (!is_target(t))
		return 0;
	u32 tid = t->pid;
	bool named = cfg_loop_explicit && bpf_map_lookup_elem(&loop_tids, &tid);
	if (!cfg_loop_auto && !named)
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		drop(DROP_STORAGE, 1);
		return 0;
	}
	u64 now = bpf_ktime_get_ns();
	u64 arg = cls == LOOP_CLASS_SELECT ? arg1 : arg0;
	u64 id = ((u64)cls << 56) | (arg & ((1ULL << 56) - 1));

	st->loop_flags &= ~LOOP_IN_WAIT;
	if (cls == LOOP_CLASS_EPOLL)
		st->loop_flags |= LOOP_SEEN_EPOLL;
	else if (st->loop_flags & LOOP_SEEN_EPOLL)
		return 0; /* a poll inside an epoll loop's callback */
	if (st->loop_votes == 0) {
		st->loop_cand = id;
		st->loop_votes = 1;
	} else if (st->loop_cand == id) {
		if (st->loop_votes < LOOP_VOTES_MAX)
			st->loop_votes++;
	} else {
		st->loop_votes--;
	}
	u32 need = named ? 1 : cls == LOOP_CLASS_EPOLL ? LOOP_PROMOTE_EPOLL : LOOP_PROMOTE;
	/* An epoll loop keeps its wait while its epoll fd is open: another
	 * epoll waited on meanwhile (Node's execSync runs a private loop) is
	 * inside its callbacks, however often it is called. A new loop
	 * (asyncio.run again) closed the old one's fd first. */
	if (st->loop_cand == id && st->loop_wait != id && st->loop_votes >= need &&
	    !(st->loop_file && (u64)fd_file(t, (s32)(u32)st->loop_wait) == st->loop_file))
		loop_elect(t, st, id, nr);
	if (id != st->loop_wait)
		return 0;
	st->loop_flags |= LOOP_IN_WAIT;
	if (st->loop_seq)
		loop_end_iteration(t, st, now);
	return 0;
}

/* The loop wait returned: a new iteration begins. */
static __always_inline int loop_wait_exit(s32 nr)
{
	struct task_struct *t = bpf_get_current_task_btf();
	if (!is_target(t))
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, 0);
	if (!st || !(st->loop_flags & LOOP_IN_WAIT)) {
		/* The wait it was in at attach? Then it is a loop's. */
		u32 tid = t->pid;
		u64 *hint = bpf_map_lookup_elem(&loop_hints, &tid);
		if (!hint)
			return 0;
		u64 id = *hint;
		bpf_map_delete_elem(&loop_hints, &tid);
		if (!st)
			st = bpf_task_storage_get(&tstate, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!st || st->loop_wait)
			return 0;
		st->loop_cand = id;
		st->loop_votes = LOOP_PROMOTE;
		if (id >> 56 == LOOP_CLASS_EPOLL)
			st->loop_flags |= LOOP_SEEN_EPOLL;
		loop_elect(t, st, id, nr);
		if (st->loop_wait != id)
			return 0;
	}
	st->loop_flags &= ~LOOP_IN_WAIT;
	u32 seq = ++st->loop_next;
	if (!seq)
		seq = ++st->loop_next;
	st->loop_seq = seq;
	st->iter_off = 0;
	st->iter_start = bpf_ktime_get_ns();
	u32 tid = t->pid;
	struct loop_stats *ls = bpf_map_lookup_elem(&loop_threads, &tid);
	if (ls) {
		ls->seq = seq;
		ls->iter_start = st->iter_start;
		ls->in_iter = 1;
	}
	return 0;
}

/* The wait syscalls' class (LOOP_CLASS_*), 0 for any other syscall. */
static __always_inline u32 loop_wait_class(s64 nr)
{
	switch (nr) {
	case 232: /* epoll_wait */
	case 281: /* epoll_pwait */
	case 441: /* epoll_pwait2 */
		return LOOP_CLASS_EPOLL;
	case 7:   /* poll */
	case 271: /* ppoll */
		return LOOP_CLASS_POLL;
	case 23:  /* select */
	case 270: /* pselect6 */
		return LOOP_CLASS_SELECT;
	}
	return 0;
}

/* Every syscall of the machine passes the raw sys_enter/sys_exit
 * tracepoints while these are attached; all but the seven waits leave at
 * the first compare. Raw tracepoints through BTF need no tracefs (the
 * per-syscall events' ids live there, and a fresh host or a container has
 * none mounted) and no ftrace (fentry needs CONFIG_DYNAMIC_FTRACE). A
 * compat (32-bit) task's numbers mean other syscalls: skipped, as the
 * per-syscall events skip them. */
SEC("tp_btf/sys_enter")
int BPF_PROG(bprof_loop_enter, struct pt_regs *regs, long id)
{
	u32 cls = loop_wait_class(id);
	if (!cls || !cfg_loop || regs->cs != USER_CS_64)
		return 0;
	return loop_wait_enter(regs->di, regs->si, cls, id);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(bprof_loop_exit, struct pt_regs *regs, long ret)
{
	s64 nr = regs->orig_ax;
	if (!loop_wait_class(nr) || !cfg_loop || regs->cs != USER_CS_64)
		return 0;
	return loop_wait_exit(nr);
}

/* On-CPU samples of loop threads: a task-clock perf event per loop thread
 * (opened by user space when the thread is found), so only loop threads
 * are sampled, and only while they run. Samples outside an iteration (CPU
 * spent inside the wait itself) are not the loop's callbacks: skipped. */
/* The perf_event program context, uapi struct bpf_perf_event_data for
 * x86-64: the sample's registers (uapi struct pt_regs: cs is word 17; the
 * kernel's struct pt_regs is declared in kernel.h for CO-RE) and the period. */
struct perf_sample_ctx {
	u64 regs[21];
	u64 sample_period;
	u64 addr;
};
#define PERF_REGS_CS 17

SEC("perf_event")
int bprof_loop_sample(struct perf_sample_ctx *ctx)
{
	if (!cfg_loop)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	if (!is_target(t))
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, 0);
	if (!st || !st->loop_seq)
		return 0;

	struct agg_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.tgid = t->tgid;
	key.tid = t->pid;
	key.kind = KIND_ONCPU;
	key.sysnr = syscall_of((struct pt_regs *)bpf_task_pt_regs(t));
	key.fd = -1;
	key.waker_ustack = -1;
	key.waker_kstack = -1;
	user_stack(ctx, t, &key.ustack, &key.uhash);
	/* In kernel mode (a syscall doing work): its kernel stack too. */
	key.kstack = -1;
	if (cfg_kernel_stacks && !(ctx->regs[PERF_REGS_CS] & 3))
		key.kstack = stack_id(ctx, &kstacks, 0, DROP_KSTACK_COLLISION, DROP_KSTACK_ERROR);
	key.pystack = py_stack_id(t, NULL);
	key.loop_seq = st->loop_seq;
	agg_add(&key, 1, ctx->sample_period, 0, 0);
	return 0;
}

/*
 * Waits in progress.
 *
 * A thread that blocked before the programs were attached has no interval
 * open: its switch-in would find nothing to close, and a thread stuck for
 * good would never show. bprof_inflight_start runs once, right after
 * attach, over every task: a target thread off the CPU gets the interval
 * bprof_switch would have opened, from the window's start, with the same
 * stacks, syscall and target taken from its saved registers and, since
 * its user memory is another task's, with bpf_copy_from_user_task (a
 * sleepable iterator, kernel >= 5.18). bprof_inflight_stop runs after
 * detach: every interval still open is closed at the window's end.
 * Both mark what they cut (CUT_*) and note, per thread, since when it
 * has waited.
 */

/* The window's start (for _start) or end (for _stop), CLOCK_MONOTONIC,
 * set by user space before it runs the iterator. */
volatile u64 inflight_at = 0;

/* tid -> a thread found off-CPU, and since when (see struct inflight_wait). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct inflight_wait);
} inflight SEC(".maps");

/* Kernel stacks taken by the start iterator (a stack-trace map takes only
 * the current task's): id (INFLIGHT_KSTACK | n) -> frames, 0-terminated. */
#define INFLIGHT_KSTACK 0x40000000
#define KSTACK_DEPTH 127
struct kstack_frames {
	u64 pcs[KSTACK_DEPTH + 1];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct kstack_frames);
} inflight_kstacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct kstack_frames);
} kstack_scratch SEC(".maps");

u32 inflight_kstack_next = 0;

/* Iterator context (include/linux/bpf.h: struct bpf_iter__task). */
struct bpf_iter_meta;
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

/* CLOCK_MONOTONIC minus each CPU's scheduler (rq) clock, indexed by CPU:
 * the CPUs' rq clocks differ (29-33 ms between the two of a VM here), so a
 * time read off one CPU's rq clock converts with that CPU's offset. Set
 * by bprof_rq_offset, run once on every CPU before the start iterator. */
#define MAX_CPUS 1024
s64 rq_offset[MAX_CPUS] = {};

/* Iterator context, meta part (include/linux/bpf.h: struct bpf_iter_meta). */
struct bpf_iter_meta {
	u64 seq_num;
} __attribute__((preserve_access_index));

/* Runs on the CPU user space pinned it to, after user space brought the
 * rq clock's account of its own thread up to date (reading its own
 * schedstat): that thread's exec_start is this CPU's rq clock now. Does
 * its work once, at the first task. */
SEC("iter/task")
int bprof_rq_offset(struct bpf_iter__task *ctx)
{
	if (ctx->meta->seq_num != 0)
		return 0;
	u32 cpu = bpf_get_smp_processor_id();
	if (cpu < MAX_CPUS)
		rq_offset[cpu] = (s64)bpf_ktime_get_ns() - (s64)bpf_get_current_task_btf()->se.exec_start;
	return 0;
}

/* t is a target thread off the CPU, not this one. */
static __always_inline bool off_cpu_target(struct task_struct *t)
{
	if (!t || t->__state == 0 /* TASK_RUNNING: on a CPU or queued for one */ || t->on_cpu)
		return false;
	if (t->flags & PF_KTHREAD)
		return false;
	return is_target(t);
}

SEC("iter.s/task")
int bprof_inflight_start(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	if (!off_cpu_target(t))
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		drop(DROP_STORAGE, 1);
		return 0;
	}
	if (st->ts_out)
		return 0; /* switched out after attach: its interval is open already */
	if (!st->named) {
		name_thread(t, st);
		st->last_kstack = -1;
	}
	u32 state = t->__state;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
	s64 nr = syscall_of(regs);
	if (cfg_filter_syscalls && !syscall_allowed(nr))
		return 0;
	describe_interval(t, st, regs, KIND_BLOCKED, state, nr, t);
	st->ustack = -1;
	st->uhash = 0;
	if (cfg_user_stacks && cfg_unwind && t->mm)
		st->uhash = unwound_stack(t, t);
	st->kstack = -1;
	if (cfg_kernel_stacks) {
		u32 zero = 0;
		struct kstack_frames *ks = bpf_map_lookup_elem(&kstack_scratch, &zero);
		if (ks) {
			__builtin_memset(ks, 0, sizeof(*ks));
			long n = bpf_get_task_stack(t, ks->pcs, KSTACK_DEPTH * 8, 0);
			u32 id = INFLIGHT_KSTACK | (__sync_fetch_and_add(&inflight_kstack_next, 1) & 0xffffff);
			if (n > 0 && !bpf_map_update_elem(&inflight_kstacks, &id, ks, BPF_ANY))
				st->kstack = id;
			else
				drop(DROP_KSTACK_ERROR, 1);
		}
	}
	st->pystack = py_stack_id(t, t);
	st->exec_out = t->se.sum_exec_runtime;
	st->out_seq = 0;
	/* Since when it waits: its exec_start is when it left the CPU, on
	 * the rq clock of the CPU it ran on. */
	u64 now = bpf_ktime_get_ns(), left = t->se.exec_start;
	u32 cpu = t->thread_info.cpu;
	st->since = 0;
	if (left && cpu < MAX_CPUS && rq_offset[cpu]) {
		s64 since = (s64)left + rq_offset[cpu];
		if (since > 0 && (u64)since <= now)
			st->since = since;
	}
	st->cut = CUT_BEFORE;
	st->ts_out = inflight_at ? inflight_at : now;
	return 0;
}

SEC("iter/task")
int bprof_inflight_stop(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	if (!t || !is_target(t))
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, 0);
	if (!st || !st->ts_out)
		return 0;
	u64 at = inflight_at ? inflight_at : bpf_ktime_get_ns();
	struct inflight_wait in = {
		.since = st->cut & CUT_BEFORE ? st->since : st->ts_out,
		.tgid = t->tgid,
		.state = st->state,
	};
	if (st->ts_out >= at)
		return 0;
	u32 tid = t->pid;
	bpf_map_update_elem(&inflight, &tid, &in, BPF_ANY);
	close_interval(t, st, at, CUT_AFTER);
	/* A next window goes on from here (continuous recording). */
	st->ts_out = at;
	st->cut = CUT_BEFORE;
	st->since = in.since;
	return 0;
}
