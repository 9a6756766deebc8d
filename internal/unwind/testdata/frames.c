/* Fixture for the unwind table tests: functions whose CFI exercises
 * different rules once compiled with -O2, with and without frame pointers. */
#include <alloca.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile long sink;

__attribute__((noinline)) long leaf(long x) { return x * 3 + 1; }

/* Many values live across calls: pushes of callee-saved registers. */
__attribute__((noinline)) long saves(long a, long b, long c, long d, long e) {
	long x = leaf(a), y = leaf(b), z = leaf(c), w = leaf(d), v = leaf(e);
	return x + leaf(y + z) + leaf(w * v) + a * b * c * d * e;
}

/* A variable-length array forces an rbp-based CFA even without -fno-omit-frame-pointer. */
__attribute__((noinline)) long vla(int n) {
	char *p = alloca(n);
	memset(p, n, n);
	sink = p[n / 2];
	return leaf(p[0]);
}

/* Over-aligned locals make gcc realign the stack: a CFA expression. */
__attribute__((noinline)) long realign(long x) {
	long v[8] __attribute__((aligned(64)));
	for (int i = 0; i < 8; i++)
		v[i] = leaf(x + i);
	sink = (long)&v[3];
	return v[x & 7];
}

/* A large frame: a CFA offset that does not fit in 16 bits. */
__attribute__((noinline)) long big(int i) {
	char buf[100000];
	memset(buf, i, sizeof buf);
	sink = (long)buf;
	return buf[i % sizeof buf] + leaf(i);
}

/* An early exit before the prologue: shrink-wrapping gives
 * remember_state/restore_state. */
__attribute__((noinline)) long early(long *p, int n) {
	if (!p)
		return 0;
	long s = 0;
	for (int i = 0; i < n; i++)
		s += leaf(p[i]);
	if (s < 0)
		abort();
	return s + leaf(s);
}

__attribute__((noinline)) long variadic(int n, ...) {
	va_list ap;
	long s = 0;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		s += leaf(va_arg(ap, long));
	va_end(ap);
	return s;
}

__attribute__((noinline)) long recurse(int n) {
	if (n <= 0)
		return leaf(n);
	return recurse(n - 1) + leaf(n) * 2;
}

/* Hand-written CFI for rules the table cannot express (a CFA based on
 * r10, rbp kept in another register) and for remember/restore_state. */
__asm__(".text\n.globl odd\n.type odd,@function\nodd:\n"
	".cfi_startproc\n"
	"push %rbp\n .cfi_adjust_cfa_offset 8\n .cfi_offset rbp, -16\n"
	"mov %rsp, %r10\n .cfi_def_cfa_register r10\n"
	"mov %rbp, %r11\n .cfi_register rbp, r11\n"
	".cfi_remember_state\n"
	".cfi_def_cfa rsp, 16\n .cfi_offset rbp, -16\n nop\n"
	".cfi_restore_state\n nop\n"
	".cfi_def_cfa rsp, 16\n .cfi_offset rbp, -16\n"
	"pop %rbp\n .cfi_def_cfa_offset 8\n .cfi_same_value rbp\n"
	"ret\n.cfi_endproc\n.size odd, .-odd\n");

int main(int argc, char **argv) {
	long a[4] = {1, 2, 3, 4};
	long r = saves(argc, 2, 3, 4, 5) + vla(argc + 16) + realign(argc) + big(argc) +
		 early(a, 4) + early(NULL, 0) + variadic(3, 1L, 2L, 3L) + recurse(argc + 3);
	printf("%ld\n", r);
	return 0;
}
