/* In-kernel user-stack unwinder for x86-64 from .eh_frame-derived tables.
 *
 * User space (internal/unwind builds the tables, internal/attach loads
 * them) fills two maps:
 *  - unw_rows: one array of rows for all files. Each file's rows are a
 *    contiguous run, sorted by pc (ELF virtual address); a row's rule holds
 *    from its pc up to the next row's pc.
 *  - unw_procs and unw_mappings: a process's executable mappings, sorted
 *    by start, each with its file's run of rows and the load bias.
 * unw_user_stack() walks a task's user stack from the registers saved at
 * kernel entry. Where there is no table (unknown process, mapping or pc)
 * it falls back to frame pointers; where the table says the rule cannot be
 * expressed it stops rather than guess.
 *
 * Needs kernel.h (u8..u64, struct task_struct) and the libbpf headers. */
#pragma once

/* Frames per stack, a power of two (the index is masked for the
 * verifier). The walk runs under bpf_loop, so this does not change the
 * verification cost. */
#ifndef UNW_MAX_FRAMES
#define UNW_MAX_FRAMES 128
#endif
_Static_assert((UNW_MAX_FRAMES & (UNW_MAX_FRAMES - 1)) == 0, "UNW_MAX_FRAMES must be a power of two");
/* Mappings with executable code per process. */
#define UNW_MAX_MAPPINGS 128
/* Binary search steps: enough for 2^24 rows in one file. */
#define UNW_ROW_STEPS 24
#define UNW_MAPPING_STEPS 8 /* log2(UNW_MAX_MAPPINGS) + 1 */

/* Row kinds (low nibble: CFA rule; high nibble: rbp rule). The values
 * match unwind.CFAKind and unwind.RBPKind in Go. */
enum unw_cfa_kind {
	UNW_CFA_NONE = 0, /* no CFI here: try frame pointers */
	UNW_CFA_RSP = 1,  /* CFA = rsp + cfa_off8 * 8 */
	UNW_CFA_RBP = 2,  /* CFA = rbp + cfa_off8 * 8 */
	UNW_CFA_PLT = 3,  /* CFA = rsp + cfa_off8 * 8 + ((rip & 15) >= 11 ? 8 : 0) */
	UNW_CFA_END = 4,  /* outermost frame: the stack is complete */
	UNW_CFA_UNSUPPORTED = 5,
};

enum unw_rbp_kind {
	UNW_RBP_SAME = 0,   /* caller's rbp = rbp */
	UNW_RBP_OFFSET = 1, /* caller's rbp at CFA + rbp_off8 * 8 */
	UNW_RBP_UNSUPPORTED = 2,
};

/* 8 bytes per row; offsets in units of 8 bytes (x86-64 stack slots).
 * Rows whose offsets do not fit are loaded as unsupported. */
struct unw_row {
	u32 pc;
	u16 cfa_off8;
	signed char rbp_off8;
	u8 kind;
};

struct unw_mapping {
	u64 start, end; /* [start, end) in the process */
	u64 bias;       /* process address - ELF virtual address */
	u32 row_start;  /* the file's rows in unw_rows */
	u32 row_count;  /* 0: no table, frame pointers only */
};

/* A process's mappings are unw_mappings[{tgid, 0..n-1}], sorted by start;
 * unw_procs[tgid] is n. Separate entries rather than one array in a map
 * value: an index into a value must be bounded for the verifier, which then
 * tracks every search path apart and runs out of its instruction budget. */
struct unw_mapping_key {
	u32 tgid;
	u32 idx;
};

/* How a walk ended. */
enum unw_status {
	UNW_DONE_END = 0,     /* reached a frame marked outermost */
	UNW_DONE_ZERO = 1,    /* return address or frame pointer 0 */
	UNW_TRUNCATED = 2,    /* UNW_MAX_FRAMES reached */
	UNW_UNSUPPORTED = 3,  /* a rule the table cannot express */
	UNW_READ_FAULT = 4,   /* stack memory not readable (paged out) */
	UNW_NO_REGS = 5,      /* no user registers (kernel thread) */
	UNW_BAD_FRAME = 6,    /* the stack went the wrong way */
};

/* Result of one walk, in a per-CPU scratch slot. */
struct unw_stack {
	u64 pcs[UNW_MAX_FRAMES];
	u32 n;
	u32 status;       /* enum unw_status */
	u32 table_frames; /* frames unwound with a table row */
	u32 fp_frames;    /* frames unwound with frame pointers */
	u32 pending;      /* the process had no tables loaded yet: frame pointers only */
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 20); /* 8 MiB, preallocated; user space may resize before load */
	__type(key, u32);
	__type(value, struct unw_row);
} unw_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u32);
} unw_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024 * 64);
	__type(key, struct unw_mapping_key);
	__type(value, struct unw_mapping);
} unw_mappings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* see scratch_slot() */
	__type(key, u32);
	__type(value, struct unw_stack);
} unw_scratch SEC(".maps");

/* The user registers the unwinder starts from. A CO-RE flavour of pt_regs
 * (the ___ suffix is ignored when matching kernel BTF), so kernel.h's own
 * declaration stays as it is. */
struct pt_regs___unw {
	unsigned long bp;
	unsigned long ip;
	unsigned long sp;
} __attribute__((preserve_access_index));

/* The mapping of process tgid (n mappings) that holds pc, or NULL. */
static __always_inline struct unw_mapping *unw_find_mapping(u32 tgid, u32 n, u64 pc)
{
	struct unw_mapping_key key = {.tgid = tgid};
	u32 lo = 0, hi = n;
	/* Invariant: mappings before lo start at or below pc, those from hi
	 * on above it. */
	for (int i = 0; i < UNW_MAPPING_STEPS && lo < hi; i++) {
		key.idx = lo + (hi - lo) / 2;
		struct unw_mapping *m = bpf_map_lookup_elem(&unw_mappings, &key);
		if (!m)
			return NULL;
		if (m->start <= pc)
			lo = key.idx + 1;
		else
			hi = key.idx;
	}
	if (lo == 0 || lo != hi)
		return NULL;
	key.idx = lo - 1;
	struct unw_mapping *m = bpf_map_lookup_elem(&unw_mappings, &key);
	if (!m || pc >= m->end)
		return NULL;
	return m;
}

/* The row in effect at file address pc, or NULL (before the first row). */
static __always_inline struct unw_row *unw_find_row(struct unw_mapping *m, u32 pc)
{
	u32 lo = m->row_start, hi = m->row_start + m->row_count;
	/* Invariant: rows before lo have row.pc <= pc, rows from hi on > pc. */
	for (int i = 0; i < UNW_ROW_STEPS && lo < hi; i++) {
		u32 mid = lo + (hi - lo) / 2;
		struct unw_row *r = bpf_map_lookup_elem(&unw_rows, &mid);
		if (!r)
			return NULL;
		if (r->pc <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == m->row_start || lo != hi)
		return NULL;
	u32 at = lo - 1;
	return bpf_map_lookup_elem(&unw_rows, &at);
}

/* One frame by frame pointers: [rbp] = caller's rbp, [rbp+8] = return. */
static __always_inline int unw_fp_step(u64 *ip, u64 *sp, u64 *bp, struct task_struct *remote)
{
	u64 frame[2];
	if (*bp == 0)
		return UNW_DONE_ZERO;
	if (*bp < *sp)
		return UNW_BAD_FRAME;
	if (read_user(frame, sizeof(frame), (void *)*bp, remote))
		return UNW_READ_FAULT;
	*sp = *bp + 16;
	*ip = frame[1];
	*bp = frame[0];
	return -1; /* continue */
}

/* State of a walk between bpf_loop steps. */
struct unw_walk {
	u64 ip, sp, bp;
	u32 tgid, nmaps;
	struct unw_stack *out;
	struct task_struct *remote; /* see read_user; only unw_step_remote reads it */
};

/* One frame: record ip, then find the caller's ip, sp and bp. Returns 0 to
 * go on, 1 when the walk is over (out->status says why). */
static __always_inline long unw_step_in(u64 i, struct unw_walk *w, struct task_struct *remote)
{
	struct unw_stack *out = w->out;
	if (!out)
		return 1;
	if (w->ip == 0) {
		out->status = UNW_DONE_ZERO;
		return 1;
	}
	out->pcs[i & (UNW_MAX_FRAMES - 1)] = w->ip;
	out->n = i + 1;
	/* A return address points after the call, possibly into the next
	 * function: look up the call instruction instead. */
	u64 lookup = i == 0 ? w->ip : w->ip - 1;
	struct unw_mapping *m = w->nmaps ? unw_find_mapping(w->tgid, w->nmaps, lookup) : NULL;
	struct unw_row *row = NULL;
	if (m && m->row_count && lookup - m->bias < 0xffffffffULL)
		row = unw_find_row(m, (u32)(lookup - m->bias));
	u8 cfa_kind = row ? (row->kind & 15) : UNW_CFA_NONE;
	if (cfa_kind == UNW_CFA_NONE) {
		int st = unw_fp_step(&w->ip, &w->sp, &w->bp, remote);
		if (st >= 0) {
			out->status = st;
			return 1;
		}
		out->fp_frames++;
		return 0;
	}
	if (cfa_kind == UNW_CFA_END) {
		out->status = UNW_DONE_END;
		return 1;
	}
	u8 rbp_kind = row->kind >> 4;
	if (cfa_kind == UNW_CFA_UNSUPPORTED || rbp_kind == UNW_RBP_UNSUPPORTED) {
		out->status = UNW_UNSUPPORTED;
		return 1;
	}
	u64 cfa;
	if (cfa_kind == UNW_CFA_RBP) {
		cfa = w->bp + (u64)row->cfa_off8 * 8;
	} else {
		cfa = w->sp + (u64)row->cfa_off8 * 8;
		if (cfa_kind == UNW_CFA_PLT && (w->ip & 15) >= 11)
			cfa += 8;
	}
	if (cfa <= w->sp) {
		out->status = UNW_BAD_FRAME;
		return 1;
	}
	u64 ra;
	if (read_user(&ra, sizeof(ra), (void *)(cfa - 8), remote)) {
		out->status = UNW_READ_FAULT;
		return 1;
	}
	if (rbp_kind == UNW_RBP_OFFSET &&
	    read_user(&w->bp, sizeof(w->bp), (void *)(cfa + (s64)row->rbp_off8 * 8), remote)) {
		out->status = UNW_READ_FAULT;
		return 1;
	}
	out->table_frames++;
	w->ip = ra;
	w->sp = cfa;
	return 0;
}

/* The bpf_loop callbacks: in the walked task's own context, and from a
 * sleepable iterator (another task's memory). Two bodies, so that the
 * first never names a sleepable helper. */
static long unw_step(u64 i, struct unw_walk *w)
{
	return unw_step_in(i, w, NULL);
}

static long unw_step_remote(u64 i, struct unw_walk *w)
{
	return unw_step_in(i, w, w->remote);
}

/* Walks task's user stack into the per-CPU scratch slot and returns it
 * (NULL only if the scratch map is missing). The caller copies out what
 * it needs before the next walk on this CPU. One frame per bpf_loop step
 * (kernel >= 5.17): the verifier checks the step once instead of once per
 * frame (64 frames unrolled cost ~200k verified instructions, 200 ms of
 * attach time). */
static __always_inline struct unw_stack *unw_user_stack(struct task_struct *task, struct task_struct *remote)
{
	u32 slot = scratch_slot(remote);
	struct unw_stack *out = bpf_map_lookup_elem(&unw_scratch, &slot);
	if (!out)
		return NULL;
	/* Slots from n on keep older walks: readers use pcs[0..n) only. */
	out->n = 0;
	out->table_frames = 0;
	out->fp_frames = 0;
	out->pending = 0;
	out->status = UNW_TRUNCATED;

	struct pt_regs___unw *regs = (struct pt_regs___unw *)bpf_task_pt_regs(task);
	if (!regs || !task->mm) {
		out->status = UNW_NO_REGS;
		return out;
	}
	struct unw_walk w = {
		.ip = BPF_CORE_READ(regs, ip),
		.sp = BPF_CORE_READ(regs, sp),
		.bp = BPF_CORE_READ(regs, bp),
		.tgid = task->tgid,
		.out = out,
		.remote = remote,
	};
	u32 *nmaps = bpf_map_lookup_elem(&unw_procs, &w.tgid);
	w.nmaps = nmaps ? *nmaps : 0;
	out->pending = !nmaps;
	if (remote)
		bpf_loop(UNW_MAX_FRAMES, unw_step_remote, &w, 0);
	else
		bpf_loop(UNW_MAX_FRAMES, unw_step, &w, 0);
	return out;
}
