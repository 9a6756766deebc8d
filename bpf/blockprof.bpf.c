// SPDX-License-Identifier: GPL-2.0
/* blockprof: off-CPU time of target threads, aggregated in the kernel.
 *
 * Design:
 *  - tp_btf/sched_switch does both halves. For prev (a target going off-CPU
 *    voluntarily) it stamps the time and takes the user and kernel stacks in
 *    prev's own context: with tracepoints only, this is the last moment the
 *    kernel will walk that thread's user stack. For next (coming back) it
 *    closes the interval and adds it to the aggregation map.
 *  - tp_btf/sched_wakeup marks when the thread became runnable, splitting the
 *    interval into blocked time and run-queue time.
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

char LICENSE[] SEC("license") = "GPL";

/* Load-time configuration; the verifier prunes branches that are off. */
volatile const u32 cfg_single_tgid = 0;  /* one target process, no children: compare, don't look up */
volatile const bool cfg_filter_tids = 0; /* only threads listed in target_tids */
volatile const bool cfg_follow_children = 0;
volatile const bool cfg_preempted = 0;    /* also count involuntary switch-outs */
volatile const bool cfg_user_stacks = 1;
volatile const bool cfg_kernel_stacks = 1;
volatile const bool cfg_reuse_kstack = 1; /* see reuse_kstack() */
volatile const u64 cfg_min_block_ns = 0;
volatile const u64 cfg_max_block_ns = 0; /* 0: no maximum */

/* Which aggregation map (0..2) is written; user space moves it on. */
volatile u32 active_agg = 0;

/* Force bpf2go to emit these types. */
const enum drop_reason *unused_drop_reason __attribute__((unused));
const enum interval_kind *unused_interval_kind __attribute__((unused));

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
	s32 ustack;
	s32 kstack;
	u32 state;
	u32 kind;
	s32 sysnr;
	s32 fd;
	u64 tfile;
	u64 tino;
	bool named; /* thread_info written */
	/* What the last kernel stack was taken for; see reuse_kstack(). */
	s32 last_ustack;
	s32 last_kstack;
	u32 last_state;
	s64 last_sysnr;
	u64 last_arg0;
	u64 pystack; /* see python.h */
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

/* (tgid, syscall) -> latency histogram. Never drained: small, read once at
 * the end. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct lat_key);
	__type(value, struct lat_val);
} latency SEC(".maps");

/* (file, inode) -> what the fd was. LRU: user space copies each one at the
 * drain that first sees it, long before it could be evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fd_key);
	__type(value, struct fd_target);
} fd_targets SEC(".maps");

/* Scratch for building an fd_target (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct fd_target);
} fd_scratch SEC(".maps");

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

static __always_inline void record_latency(u32 tgid, s32 sysnr, u64 ns)
{
	struct lat_key key = { .tgid = tgid, .sysnr = sysnr };
	struct lat_val *v = bpf_map_lookup_elem(&latency, &key);
	if (!v) {
		struct lat_val zero = {};
		bpf_map_update_elem(&latency, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&latency, &key);
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

/* Close next's interval, if it has one, and add it to the active map. */
static __always_inline void switch_in(struct task_struct *next)
{
	if (!tgid_is_target(next))
		return;
	struct task_state *st = bpf_task_storage_get(&tstate, next, 0, 0);
	if (!st || !st->ts_out)
		return;

	u64 now = bpf_ktime_get_ns();
	u64 out = st->ts_out, wake = st->ts_wake;
	st->ts_out = 0;
	if (now <= out)
		return;
	if (!wake || wake < out || wake > now)
		wake = now; /* woken before we saw it (e.g. at attach): all blocked */

	u64 blocked = wake - out, runq = now - wake;
	if (st->kind == KIND_BLOCKED) {
		if (blocked < cfg_min_block_ns || (cfg_max_block_ns && blocked > cfg_max_block_ns)) {
			drop(DROP_FILTERED, 1);
			return;
		}
	} else {
		/* Preempted: runnable the whole time. */
		runq = now - out;
		blocked = 0;
	}

	struct agg_key key = {
		.tgid = next->tgid,
		.tid = next->pid,
		.ustack = st->ustack,
		.kstack = st->kstack,
		.state = st->state,
		.kind = st->kind,
		.sysnr = st->sysnr,
		.fd = st->fd,
		.tfile = st->tfile,
		.tino = st->tino,
		.pystack = st->pystack,
	};
	void *agg = &agg0;
	u32 active = active_agg;
	if (active == 1)
		agg = &agg1;
	else if (active == 2)
		agg = &agg2;
	struct agg_val *v = bpf_map_lookup_elem(agg, &key);
	if (!v) {
		struct agg_val zero = {};
		bpf_map_update_elem(agg, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(agg, &key);
		if (!v) {
			drop(DROP_AGG_FULL, 1);
			drop(DROP_AGG_FULL_NS, blocked + runq);
			return;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->blocked_ns, blocked);
	__sync_fetch_and_add(&v->runqueue_ns, runq);
	if (st->kind == KIND_BLOCKED)
		record_latency(key.tgid, key.sysnr, blocked + runq);
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

	if (st->last_kstack >= 0 && st->ustack >= 0 && st->ustack == st->last_ustack &&
	    state == st->last_state && nr == st->last_sysnr && arg0 == st->last_arg0)
		return st->last_kstack;

	s32 id = stack_id(ctx, &kstacks, 0, DROP_KSTACK_COLLISION, DROP_KSTACK_ERROR);
	st->last_ustack = st->ustack;
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
		return true;
	}
	return false;
}

#define S_IFMT 0170000
#define S_IFSOCK 0140000

/* Describe what file `fd` of task t is, once per (file, inode): path parts
 * up to the root (crossing mounts), or a socket's addresses. */
static __always_inline bool resolve_fd(struct task_struct *t, s32 fd, struct fd_key *key)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || (u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return false;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	key->file = (u64)f;
	key->ino = BPF_CORE_READ(inode, i_ino);
	if (bpf_map_lookup_elem(&fd_targets, key))
		return true; /* known already: the common case costs one lookup */

	u32 zero = 0;
	struct fd_target *d = bpf_map_lookup_elem(&fd_scratch, &zero);
	if (!d)
		return false;
	__builtin_memset(d, 0, sizeof(*d));
	d->mode = BPF_CORE_READ(inode, i_mode);
	d->ino = key->ino;

	if ((d->mode & S_IFMT) == S_IFSOCK) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);
		d->family = BPF_CORE_READ(sk, __sk_common.skc_family);
		d->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		d->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		/* Sized reads: the destinations are byte arrays. */
		if (d->family == 2 /* AF_INET */) {
			bpf_core_read(d->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
			bpf_core_read(d->raddr, 4, &sk->__sk_common.skc_daddr);
		} else if (d->family == 10 /* AF_INET6 */) {
			bpf_core_read(d->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			bpf_core_read(d->raddr, 16, &sk->__sk_common.skc_v6_daddr);
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

SEC("tp_btf/sched_switch")
int BPF_PROG(bprof_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	switch_in(next);

	if (!is_target(prev))
		return 0;

	u32 kind = KIND_BLOCKED;
	/* A running or preempted thread is not waiting on anything. */
	if (preempt || prev_state == 0) {
		if (!cfg_preempted)
			return 0;
		kind = KIND_PREEMPTED;
	}
	/* TASK_DEAD (0x80): the thread is exiting and will not come back. */
	if (prev_state & 0x80)
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
	}

	/* The user registers saved at kernel entry: which syscall, on what.
	 * orig_ax holds the number after a syscall entry but an exception's
	 * error code after a fault; syscall entry also parks -ENOSYS in ax
	 * until the syscall returns, which tells the two apart. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(prev);
	s64 nr = BPF_CORE_READ(regs, orig_ax);
	u64 arg0 = BPF_CORE_READ(regs, di);
	if ((s64)BPF_CORE_READ(regs, ax) != -38 /* -ENOSYS */)
		nr = -1;

	st->kind = kind;
	st->state = prev_state;
	st->sysnr = nr;
	st->fd = -1;
	st->tfile = 0;
	st->tino = 0;
	if (fd_syscall(nr)) {
		struct fd_key fk = {};
		st->fd = (s32)arg0;
		if (resolve_fd(prev, (s32)arg0, &fk)) {
			st->tfile = fk.file;
			st->tino = fk.ino;
		} else {
			drop(DROP_FD_UNREADABLE, 1);
		}
	}
	st->ts_wake = 0;
	if (!cfg_user_stacks)
		st->ustack = -1;
	else if (!prev->mm)
		st->ustack = -3; /* ESRCH: exiting thread, its user memory is gone: nothing lost */
	else
		st->ustack = stack_id(ctx, &ustacks, BPF_F_USER_STACK, DROP_USTACK_COLLISION,
				      DROP_USTACK_ERROR);
	st->kstack = cfg_kernel_stacks ? kernel_stack(ctx, st, prev_state, nr, arg0) : -1;
	st->pystack = py_stack_id(prev);
	/* Last, so the interval starts as close to the switch as possible. */
	st->ts_out = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(bprof_wakeup, struct task_struct *p)
{
	if (!tgid_is_target(p))
		return 0;
	struct task_state *st = bpf_task_storage_get(&tstate, p, 0, 0);
	if (st && st->ts_out && !st->ts_wake)
		st->ts_wake = bpf_ktime_get_ns();
	return 0;
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
	if (bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY))
		drop(DROP_TARGETS_FULL, 1);
	return 0;
}

/* exec renames the process: take the thread's names again at its next
 * switch-out (with -- CMD, the first ones are the exec gate's). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(bprof_exec)
{
	struct task_struct *t = bpf_get_current_task_btf();
	u32 tgid = t->tgid;
	u8 *v = bpf_map_lookup_elem(&targets, &tgid);
	if (v && *v == TARGET_AWAIT_EXEC)
		*v = TARGET_LIVE;
	struct task_state *st = bpf_task_storage_get(&tstate, t, 0, 0);
	if (st)
		st->named = false;
	return 0;
}
