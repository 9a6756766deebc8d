// SPDX-License-Identifier: GPL-2.0
/* blockprof --goroutines: how long goroutines of Go targets stay parked.
 *
 * Design (uprobes on the Go runtime, attached per target process):
 *  - runtime.gopark: the goroutine parks. It is the current goroutine (R14
 *    holds its g on amd64, ABIInternal), so its id, its stack (frame
 *    pointers, from the return address at SP and the caller's RBP) and the
 *    wait reason (third argument, RCX) are read here. For an IO wait the
 *    second argument is &pollDesc.rg or &pollDesc.wg: the pollDesc is found
 *    by checking its self pointer, and its fd resolved in the task's table.
 *  - runtime.ready (goready: channels, mutexes, timers) and
 *    runtime.injectglist (netpoller and others hand over a list): the
 *    goroutine becomes runnable. Optional: without them the whole park
 *    counts as blocked.
 *  - runtime.execute: the goroutine runs again; the park is added to the
 *    active aggregation map and forgotten.
 *  - Per-process offsets come from user space (go_procs), from DWARF or a
 *    per-version table; a process with none is ignored.
 *  - Aggregation alternates between two maps: user space flips `go_active`,
 *    waits for the old map's in-flight count to reach zero, then drains it.
 * Programs are named bprof_* so leftovers can be found by name.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "include/kernel.h"
#include "include/goroutines.h"

char LICENSE[] SEC("license") = "GPL";

volatile const bool cfg_waker_stacks = 0; /* walk the waking goroutine's stack at ready */

/* Emitted for Go (bpf2go -type) though no program names them. */
const enum go_drop *unused_go_drop __attribute__((unused));
const struct go_agg_key *unused_go_agg_key __attribute__((unused));

volatile u32 go_active = 0;
u64 go_inflight[2] = {};

/* The uprobe context: the registers at the probed instruction. A CO-RE
 * flavour of the kernel's pt_regs (kernel.h declares only syscall ones). */
struct pt_regs___go {
	unsigned long r14;
	unsigned long bp;
	unsigned long bx;
	unsigned long ax;
	unsigned long cx;
	unsigned long sp;
} __attribute__((preserve_access_index));

/* tgid -> offsets of its Go binary. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct go_proc);
} go_procs SEC(".maps");

/* (tgid, g) -> the park in progress. LRU: a goroutine that never runs
 * again (leaked) must not hold its slot forever. Sized for busy servers
 * with many idle connections. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct go_key);
	__type(value, struct go_park);
} go_parked SEC(".maps");

/* Stack hash -> frames; never deleted (user space caches what it read),
 * so full means new stacks are lost, counted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct go_stack);
} go_stacks SEC(".maps");

/* (file, inode) -> what a poll descriptor's fd was. LRU: a busy server
 * opens sockets without end; user space copies each out at its drain. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct go_fd_key);
	__type(value, struct go_fd);
} go_fds SEC(".maps");

/* Aggregation, two maps written in turn (see go_active). */
struct go_agg_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct go_agg_key);
	__type(value, struct go_agg_val);
};
struct go_agg_map go_agg0 SEC(".maps");
struct go_agg_map go_agg1 SEC(".maps");

/* Scratch for a stack walk (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct go_stack);
} go_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GO_DROP_MAX);
	__type(key, u32);
	__type(value, u64);
} go_drops SEC(".maps");

static __always_inline void go_drop(enum go_drop reason)
{
	u32 i = reason;
	u64 *c = bpf_map_lookup_elem(&go_drops, &i);
	if (c)
		*c += 1;
}

/* Walk the current goroutine's frames: first the return address at sp
 * (the probe sits on a function's first instruction, before its
 * prologue), then the frame-pointer chain from bp. Returns the stack's
 * key in go_stacks, 0 if it could not be read or kept. */
static __always_inline u64 walk_stack(u64 sp, u64 bp)
{
	u32 zero = 0;
	struct go_stack *st = bpf_map_lookup_elem(&go_scratch, &zero);
	if (!st)
		return 0;
	u64 ret = 0;
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)sp) || !ret) {
		go_drop(GO_DROP_STACK_READ);
		return 0;
	}
	st->pcs[0] = ret;
	st->truncated = 0;
	u32 n = 1;
	u64 fp = bp;
	for (int i = 1; i < GO_STACK_DEPTH; i++) {
		u64 frame[2] = {}; /* saved bp, return address */
		if (!fp || bpf_probe_read_user(frame, sizeof(frame), (void *)fp) || !frame[1])
			break;
		st->pcs[i] = frame[1];
		n = i + 1;
		if (frame[0] <= fp) /* stacks grow down: callers' frames are above */
			break;
		fp = frame[0];
		if (i == GO_STACK_DEPTH - 1)
			st->truncated = 1;
	}
	st->n = n;
	/* FNV-1a over the pcs, never 0. */
	u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < GO_STACK_DEPTH; i++) {
		if (i >= n)
			break;
		h ^= st->pcs[i];
		h *= 0x100000001b3ULL;
	}
	h |= 1; /* pcs past n are stale: readers use n */
	if (bpf_map_update_elem(&go_stacks, &h, st, BPF_NOEXIST) == -7 /* E2BIG: full */) {
		go_drop(GO_DROP_STACKS_FULL);
		return 0;
	}
	return h;
}

/* The struct file of fd in the current task's table, or NULL. */
static __always_inline struct file *current_fd_file(s64 fd)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

/* Describe fd once per (file, inode): a socket's addresses, or its mode. */
static __always_inline bool describe_fd(s64 fd, struct go_fd_key *key)
{
	struct file *f = current_fd_file(fd);
	if (!f)
		return false;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	key->file = (u64)f;
	key->ino = BPF_CORE_READ(inode, i_ino);
	if (bpf_map_lookup_elem(&go_fds, key))
		return true;
	struct go_fd d = {};
	d.mode = BPF_CORE_READ(inode, i_mode);
	d.ino = key->ino;
	if ((d.mode & 0170000) == 0140000 /* S_IFSOCK */) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);
		d.family = BPF_CORE_READ(sk, __sk_common.skc_family);
		d.sotype = BPF_CORE_READ(sk, sk_type);
		d.protocol = BPF_CORE_READ(sk, sk_protocol);
		d.lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		d.rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (d.family == 2 /* AF_INET */) {
			bpf_core_read(d.laddr, 4, &sk->__sk_common.skc_rcv_saddr);
			bpf_core_read(d.raddr, 4, &sk->__sk_common.skc_daddr);
		} else if (d.family == 10 /* AF_INET6 */) {
			bpf_core_read(d.laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			bpf_core_read(d.raddr, 16, &sk->__sk_common.skc_v6_daddr);
		}
	}
	bpf_map_update_elem(&go_fds, key, &d, BPF_ANY);
	return true;
}

/* An IO wait's target: gopark's lock argument is &pd.rg (read) or &pd.wg
 * (write); the one whose self pointer points back is the pollDesc. */
static __always_inline void io_target(struct go_proc *o, u64 gpp, struct go_park *p)
{
	u64 pd = 0, self = 0;
	for (int i = 0; i < 2; i++) {
		u64 cand = gpp - (i == 0 ? o->pd_rg : o->pd_wg);
		if (!bpf_probe_read_user(&self, sizeof(self), (void *)(cand + o->pd_self)) && self == cand) {
			pd = cand;
			break;
		}
	}
	if (!pd) {
		go_drop(GO_DROP_POLLDESC);
		return;
	}
	u64 fd = 0;
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(pd + o->pd_fd))) {
		go_drop(GO_DROP_POLLDESC);
		return;
	}
	struct go_fd_key k = {};
	if (!describe_fd((s64)fd, &k)) {
		go_drop(GO_DROP_FD);
		return;
	}
	p->file = k.file;
	p->ino = k.ino;
}

SEC("uprobe")
int bprof_go_park(struct pt_regs *ctx)
{
	struct pt_regs___go *regs = (void *)ctx;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *o = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!o)
		return 0;
	u64 g = BPF_CORE_READ(regs, r14);
	struct go_key key = {.tgid = tgid, .g = g};
	struct go_park p = {};
	p.parked_ns = bpf_ktime_get_ns();
	p.reason = BPF_CORE_READ(regs, cx) & 0xff;
	bpf_probe_read_user(&p.goid, sizeof(p.goid), (void *)(g + o->g_goid));
	p.stack = walk_stack(BPF_CORE_READ(regs, sp), BPF_CORE_READ(regs, bp));
	if (p.reason == o->iowait && o->pd_self)
		io_target(o, BPF_CORE_READ(regs, bx), &p);
	if (bpf_map_update_elem(&go_parked, &key, &p, BPF_ANY))
		go_drop(GO_DROP_PARKED_FULL);
	return 0;
}

/* Stamp a parked goroutine runnable, once. */
static __always_inline void made_ready(u32 tgid, u64 g, u64 now, u64 waker_stack, u64 waker_goid)
{
	struct go_key key = {.tgid = tgid, .g = g};
	struct go_park *p = bpf_map_lookup_elem(&go_parked, &key);
	if (!p || p->ready_ns)
		return;
	p->ready_ns = now;
	p->waker_stack = waker_stack;
	p->waker_goid = waker_goid;
}

SEC("uprobe")
int bprof_go_ready(struct pt_regs *ctx)
{
	struct pt_regs___go *regs = (void *)ctx;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *o = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!o)
		return 0;
	u64 now = bpf_ktime_get_ns();
	u64 gp = BPF_CORE_READ(regs, ax);
	u64 wstack = 0, wgoid = 0;
	if (cfg_waker_stacks) {
		struct go_key key = {.tgid = tgid, .g = gp};
		struct go_park *p = bpf_map_lookup_elem(&go_parked, &key);
		if (!p || p->ready_ns)
			return 0;
		u64 cur = BPF_CORE_READ(regs, r14);
		bpf_probe_read_user(&wgoid, sizeof(wgoid), (void *)(cur + o->g_goid));
		wstack = walk_stack(BPF_CORE_READ(regs, sp), BPF_CORE_READ(regs, bp));
	}
	made_ready(tgid, gp, now, wstack, wgoid);
	return 0;
}

/* injectglist(glist *gList): the netpoller's (and others') goroutines made
 * runnable in one go; walk the list through g.schedlink. */
SEC("uprobe")
int bprof_go_inject(struct pt_regs *ctx)
{
	struct pt_regs___go *regs = (void *)ctx;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *o = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!o)
		return 0;
	u64 now = bpf_ktime_get_ns();
	u64 g = 0;
	if (bpf_probe_read_user(&g, sizeof(g), (void *)BPF_CORE_READ(regs, ax)))
		return 0;
	for (int i = 0; i < 64 && g; i++) {
		made_ready(tgid, g, now, 0, 0);
		if (bpf_probe_read_user(&g, sizeof(g), (void *)(g + o->g_schedlink)))
			break;
	}
	return 0;
}

static __always_inline u32 agg_enter(void)
{
	u32 idx = go_active & 1;
	__sync_fetch_and_add(&go_inflight[idx], 1);
	u32 again = go_active & 1;
	if (again != idx) {
		/* Flipped under us: the other map, which user space leaves
		 * alone until its in-flight count drops to zero. */
		__sync_fetch_and_add(&go_inflight[idx], -1);
		idx = again;
		__sync_fetch_and_add(&go_inflight[idx], 1);
	}
	return idx;
}

SEC("uprobe")
int bprof_go_run(struct pt_regs *ctx)
{
	struct pt_regs___go *regs = (void *)ctx;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct go_key key = {.tgid = tgid, .g = BPF_CORE_READ(regs, ax)};
	struct go_park *p = bpf_map_lookup_elem(&go_parked, &key);
	if (!p)
		return 0;
	u64 now = bpf_ktime_get_ns();
	struct go_agg_key k = {
		.tgid = tgid, .reason = p->reason, .goid = p->goid, .stack = p->stack,
		.file = p->file, .ino = p->ino, .waker_stack = p->waker_stack,
	};
	u64 blocked, runq = 0, unsplit = 0;
	if (p->ready_ns && p->ready_ns <= now && p->ready_ns >= p->parked_ns) {
		blocked = p->ready_ns - p->parked_ns;
		runq = now - p->ready_ns;
	} else {
		blocked = now - p->parked_ns;
		unsplit = 1;
	}
	bpf_map_delete_elem(&go_parked, &key);

	u32 idx = agg_enter();
	void *agg = idx ? (void *)&go_agg1 : (void *)&go_agg0;
	struct go_agg_val *v = bpf_map_lookup_elem(agg, &k);
	if (!v) {
		struct go_agg_val zero = {};
		bpf_map_update_elem(agg, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(agg, &k);
	}
	if (v) {
		__sync_fetch_and_add(&v->count, 1);
		__sync_fetch_and_add(&v->blocked_ns, blocked);
		__sync_fetch_and_add(&v->runqueue_ns, runq);
		if (unsplit)
			__sync_fetch_and_add(&v->unsplit, 1);
	} else {
		go_drop(GO_DROP_AGG_FULL);
	}
	__sync_fetch_and_add(&go_inflight[idx], -1);
	return 0;
}
