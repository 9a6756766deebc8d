// SPDX-License-Identifier: GPL-2.0
/* Test hook for include/unwind.h: walks the user stack of one process each
 * time it blocks and keeps the last walk, so a Go test can compare it with
 * the symbols it expects. Not loaded by blockprof itself. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "include/kernel.h"
#include "include/unwind.h"

char LICENSE[] SEC("license") = "GPL";

volatile const u32 cfg_unw_tgid = 0;

/* The last walk and how many walks were made. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct unw_stack);
} unw_last SEC(".maps");

volatile u64 unw_walks = 0;
volatile u64 unw_walk_ns = 0; /* total time spent walking, for the cost per walk */

/* Force bpf2go to emit this type. */
const enum unw_status *unused_unw_status __attribute__((unused));

SEC("tp_btf/sched_switch")
int BPF_PROG(bprof_unwtest, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	if (prev->tgid != cfg_unw_tgid || preempt || prev_state == 0)
		return 0;
	u64 t0 = bpf_ktime_get_ns();
	struct unw_stack *s = unw_user_stack(prev, NULL);
	if (!s)
		return 0;
	__sync_fetch_and_add(&unw_walk_ns, bpf_ktime_get_ns() - t0);
	u32 zero = 0;
	bpf_map_update_elem(&unw_last, &zero, s, BPF_ANY);
	__sync_fetch_and_add(&unw_walks, 1);
	return 0;
}
