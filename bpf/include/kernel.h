/* Minimal kernel types for CO-RE. Only the fields blockprof reads are
 * declared; preserve_access_index lets libbpf/cilium relocate each access
 * against the running kernel's BTF, so no vmlinux.h from a build machine is
 * needed and the object loads on any kernel with BTF. */
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed int s32;
typedef signed long long s64;
typedef _Bool bool;
#define true 1
#define false 0

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h */

struct mm_struct;

struct task_struct {
	unsigned int flags;
	int pid;
	int tgid;
	char comm[16];
	struct task_struct *group_leader;
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long ax;
	unsigned long di;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));
