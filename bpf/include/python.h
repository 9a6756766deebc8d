/* Python frames at switch-out: walk the CPython interpreter frames of the
 * thread going off-CPU, in its own context, and store them content-
 * addressed so the stack's id can join the aggregation key.
 *
 * Design:
 *  - User space finds _PyRuntime and the struct offsets of each Python
 *    target (internal/python) and puts them in py_targets, keyed by tgid.
 *    Without Python targets cfg_python is 0 and the verifier drops all of
 *    this; with them, non-Python targets pay one hash lookup.
 *  - The thread state is found by its native_thread_id (3.11+) on the
 *    interpreter's thread list, not through libc's TLS: that works with any
 *    libc, and on 3.13 the TLS pointer is cleared while a thread waits
 *    without the GIL. The result is cached per thread (task storage) and
 *    re-checked with one read.
 *  - Frames: up to PY_MAX_FRAMES (code object, instruction index) pairs
 *    (3.12+ entry shims included, as code 0),
 *    one 72-byte read per frame. Names and lines are resolved in user
 *    space from /proc/PID/mem.
 *  - py_stacks is keyed by a 64-bit hash of the frames: equal stacks share
 *    an entry, and the hash goes into agg_key, so aggregation stays in the
 *    kernel.
 */
#pragma once

#define PY_MAX_FRAMES 128
/* Threads walked to find a thread state not cached yet. */
#define PY_MAX_THREADS 128
/* Bytes of an interpreter frame read at once (internal/python checks
 * every field it needs lies within). */
#define PY_FRAME_READ 72

/* Offsets and addresses of one CPython process (internal/python.Offsets). */
struct py_target {
	u64 runtime; /* address of _PyRuntime */
	u32 interpreters_head;
	u32 threads_head;
	u32 thread_next;
	u32 native_thread_id;
	u32 thread_frame;   /* tstate.cframe (3.11, 3.12) or .current_frame */
	s32 cframe_current; /* _PyCFrame.current_frame, -1: no cframe */
	u32 frame_code;
	u32 frame_previous;
	u32 frame_instr;
	u32 frame_owner;
	u32 owner_cstack; /* owner of C-stack shim frames, skipped */
	u32 code_adaptive; /* where a code object's bytecode starts */
};

/* One Python stack, innermost frame first; code 0 marks a skipped shim
 * frame. */
struct py_stack {
	u32 n;
	u32 truncated; /* deeper than PY_MAX_FRAMES */
	u32 tgid;      /* code addresses mean something in this process only */
	u32 pad;
	u64 code[PY_MAX_FRAMES];
	u32 instr[PY_MAX_FRAMES]; /* code unit index */
};

volatile const bool cfg_python = 0; /* some target is a CPython process */

/* tgid -> offsets; filled by user space at attach. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct py_target);
} py_targets SEC(".maps");

/* Hash of the frames -> frames. LRU: user space copies each new stack as
 * it appears (py_new), long before 4096 newer ones could evict it. 6 MiB. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, struct py_stack);
} py_stacks SEC(".maps");

/* Keys of new py_stacks entries, so user space reads their code objects at
 * once: a short-lived process may be gone by the next drain. Only new
 * stacks are sent, and user space reads promptly: 64 KiB is plenty. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} py_new SEC(".maps");

struct py_scratch {
	struct py_stack stack;
	u8 frame[PY_FRAME_READ];
};

/* Building a stack: too big for the BPF stack. Two slots: see
 * scratch_slot(). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, struct py_scratch);
} py_scratch SEC(".maps");

/* No negative cache: a thread state can be listed before its
 * native_thread_id is set (start-up), and a cached miss then hid a
 * thread's first blocking calls. A thread without one (native threads of
 * a Python process) pays the list walk, two reads per Python thread, at
 * each switch-out. */
struct py_thread {
	u64 tstate; /* PyThreadState of this thread, 0 if not known */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct py_thread);
} py_threads SEC(".maps");

static __always_inline void drop(u32 reason, u64 n);

static __always_inline u64 py_read_u64(u64 addr, bool *failed, struct task_struct *remote)
{
	u64 v = 0;
	if (read_user(&v, sizeof(v), (void *)addr, remote)) {
		*failed = true;
		return 0;
	}
	return v;
}

/* The PyThreadState whose native_thread_id is t's tid, 0 if none. */
static __always_inline u64 py_thread_state(struct task_struct *t, struct py_target *pt,
					   bool *failed, struct task_struct *remote)
{
	u32 tid = t->pid, seen = 0;
	struct py_thread *pth = bpf_task_storage_get(&py_threads, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!pth)
		return 0;
	if (pth->tstate) {
		/* Still this thread's? (thread states are freed and reused) */
		if (!read_user(&seen, sizeof(seen), (void *)(pth->tstate + pt->native_thread_id), remote) &&
		    seen == tid)
			return pth->tstate;
		pth->tstate = 0;
	}
	/* Before the interpreter starts, _PyRuntime's page may not even be
	 * faulted in (probe reads cannot fault): no interpreter yet, no loss. */
	bool early = false;
	u64 interp = py_read_u64(pt->runtime + pt->interpreters_head, &early, remote);
	u64 head = interp ? py_read_u64(interp + pt->threads_head, failed, remote) : 0;
	u64 ts = head;
	for (int i = 0; i < PY_MAX_THREADS && ts; i++) {
		if (read_user(&seen, sizeof(seen), (void *)(ts + pt->native_thread_id), remote)) {
			*failed = true;
			break;
		}
		if (seen == tid) {
			pth->tstate = ts;
			return ts;
		}
		ts = py_read_u64(ts + pt->thread_next, failed, remote);
	}
	return 0;
}

static __always_inline u64 py_mix(u64 h, u64 v)
{
	h ^= v;
	h *= 0x100000001b3ULL; /* FNV-1a prime, on whole words */
	return h ^ (h >> 29);
}

/* Walks t's Python frames into py_stacks and returns the stack's key, 0
 * when t is not a Python thread or has no Python frames now. */
static __always_inline u64 py_stack_id(struct task_struct *t, struct task_struct *remote)
{
	if (!cfg_python)
		return 0;
	/* An exiting thread past exit_mm has no user memory left to read. */
	if (!t->mm)
		return 0;
	u32 tgid = t->tgid, slot = scratch_slot(remote);
	struct py_target *pt = bpf_map_lookup_elem(&py_targets, &tgid);
	if (!pt)
		return 0;
	bool failed = false;
	u64 ts = py_thread_state(t, pt, &failed, remote);
	if (!ts) {
		if (failed)
			drop(DROP_PY_READ, 1);
		return 0;
	}
	u64 frame = py_read_u64(ts + pt->thread_frame, &failed, remote);
	if (frame && pt->cframe_current >= 0)
		frame = py_read_u64(frame + (u32)pt->cframe_current, &failed, remote);
	if (!frame) {
		if (failed)
			drop(DROP_PY_READ, 1);
		return 0;
	}
	struct py_scratch *sc = bpf_map_lookup_elem(&py_scratch, &slot);
	if (!sc)
		return 0;
	struct py_stack *s = &sc->stack;
	u32 fcode = pt->frame_code, fprev = pt->frame_previous, finstr = pt->frame_instr,
	    fowner = pt->frame_owner;
	/* Bounds the verifier can see; internal/python guarantees them. */
	if (fcode > PY_FRAME_READ - 8 || fprev > PY_FRAME_READ - 8 || finstr > PY_FRAME_READ - 8 ||
	    fowner > PY_FRAME_READ - 1)
		return 0;
	/* Slot i holds frame i: the verifier then tracks one counter, not a
	 * count of kept frames per path (which made it explore every mix).
	 * Shim frames are stored with code 0 and skipped by user space. */
	u64 h = py_mix(0xcbf29ce484222325ULL /* FNV offset basis */, tgid);
	u32 n = 0;
	for (int i = 0; i < PY_MAX_FRAMES; i++) {
		if (!frame)
			break;
		if (read_user(sc->frame, PY_FRAME_READ, (void *)frame, remote)) {
			drop(DROP_PY_READ, 1);
			break;
		}
		u64 code = *(u64 *)(sc->frame + fcode);
		u64 instr = *(u64 *)(sc->frame + finstr);
		if (sc->frame[fowner] == pt->owner_cstack)
			code = 0; /* the C-stack shim of an entry into the eval loop */
		frame = *(u64 *)(sc->frame + fprev);
		/* Code unit index (2-byte units); garbage when instr is not in
		 * the bytecode, which user space then cannot place on a line.
		 * Unsigned: clang's BPF backend has no signed division. */
		u32 idx = (u32)((instr - code - pt->code_adaptive) >> 1);
		s->code[i] = code;
		s->instr[i] = idx;
		h = py_mix(py_mix(h, code), idx);
		n = i + 1;
	}
	if (!n)
		return 0;
	s->n = n;
	s->tgid = tgid;
	s->truncated = frame != 0;
	if (frame)
		drop(DROP_PY_TRUNCATED, 1);
	h = py_mix(h, n | (u64)s->truncated << 32);
	if (!h)
		h = 1;
	if (!bpf_map_lookup_elem(&py_stacks, &h) &&
	    !bpf_map_update_elem(&py_stacks, &h, s, BPF_NOEXIST))
		bpf_ringbuf_output(&py_new, &h, sizeof(h), 0); /* lost: named at the drain, if still alive */
	return h;
}
