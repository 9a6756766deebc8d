/* Fixture for the in-kernel unwinder test: a call chain compiled without
 * frame pointers that blocks in libc (usleep -> clock_nanosleep). */
#include <stdio.h>
#include <unistd.h>

volatile long sink;

/* The asm after each call keeps it a call (no tail call) and the frames
 * distinct; the locals give each level its own stack adjustment. */
__attribute__((noinline)) void level3(int n) {
	volatile long pad[5] = {n};
	for (;;) {
		usleep(2000);
		sink += pad[0];
	}
}

__attribute__((noinline)) void level2(int n) {
	volatile long pad[9] = {n};
	level3(n + 1);
	__asm__ volatile("" ::: "memory");
	sink += pad[1];
}

__attribute__((noinline)) void level1(int n) {
	volatile long pad[3] = {n};
	level2(n + 1);
	__asm__ volatile("" ::: "memory");
	sink += pad[2];
}

int main(void) {
	printf("ready\n");
	fflush(stdout);
	level1(1);
	return 0;
}
