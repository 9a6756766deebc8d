/* Minimal kernel types for CO-RE, and the two helpers every program file
 * shares for user memory. Only the fields blockprof reads are
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

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

/* fs/mount.h: a vfsmount is embedded in its mount. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct in6_addr {
	u8 s6_addr[16];
};

/* The address fields sit in anonymous unions in the kernel; CO-RE finds
 * them by name through those. */
struct sock_common {
	u32 skc_daddr;
	u32 skc_rcv_saddr;
	u16 skc_dport;
	u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	u16 sk_type;
	u16 sk_protocol;
} __attribute__((preserve_access_index));

/* include/uapi/linux/un.h */
struct sockaddr_un {
	unsigned short sun_family;
	char sun_path[108];
};

/* include/net/af_unix.h: a unix socket's bound name, if any. */
struct unix_address {
	int len;
	struct sockaddr_un name[];
} __attribute__((preserve_access_index));

struct unix_sock {
	struct sock sk;
	struct unix_address *addr;
	struct sock *peer;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct sched_entity {
	u64 sum_exec_runtime; /* ns on CPU, updated before sched_switch fires */
	/* rq clock when the task last started running or was last accounted:
	 * for a sleeping task, when it left the CPU (update_curr at dequeue). */
	u64 exec_start;
} __attribute__((preserve_access_index));

/* x86-64 keeps thread_info inside task_struct: cpu is the CPU the task
 * runs on, or last ran on. A CO-RE flavour (the ___ suffix is ignored when
 * matching kernel BTF): blockprof.h has a thread_info of its own. */
struct thread_info___k {
	u32 cpu;
} __attribute__((preserve_access_index));

/* The thread group's shared state: live counts its threads not yet past
 * do_exit's group_dead test (0 once the last one is). */
struct signal_struct {
	struct { int counter; } live;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info___k thread_info;
	unsigned int __state; /* TASK_RUNNING 0, TASK_INTERRUPTIBLE 1, ... */
	int on_cpu;           /* running on a CPU right now (or switching) */
	void *stack;
	struct sched_entity se;
	unsigned int flags;
	int pid;
	int tgid;
	char comm[16];
	struct task_struct *group_leader;
	struct mm_struct *mm;
	struct files_struct *files;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

/* x86-64 syscall arguments: di, si, dx, r10, r8, r9. */
struct pt_regs {
	unsigned long r10;
	unsigned long r8;
	unsigned long ax;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned short cs; /* in an anonymous union since 6.9 (FRED): found by name */
} __attribute__((preserve_access_index));

#define USER_CS_64 0x33 /* arch/x86/include/asm/segment.h __USER_CS: a 64-bit task's syscall */

/* Reads user memory: the current task's (remote NULL: a program running in
 * the task's own context), or another task's (remote: a sleepable task
 * iterator, where user pages may be faulted in). With remote a constant
 * NULL the compiler drops the other branch, so programs that may not
 * sleep never call the sleepable helper. */
static __always_inline long read_user(void *dst, u32 size, const void *src, struct task_struct *remote)
{
	if (remote)
		return bpf_copy_from_user_task(dst, size, (void *)src, remote, 0);
	return bpf_probe_read_user(dst, size, src);
}

/* The per-CPU scratch slot to build in: programs in a task's own context
 * use slot 0; the sleepable iterator (remote) slot 1, since it can be
 * preempted, and a switch program then run on its CPU, in mid-use. */
static __always_inline u32 scratch_slot(struct task_struct *remote)
{
	return remote ? 1 : 0;
}
