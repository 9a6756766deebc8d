/*
 * manystacks: blocks through thousands of distinct call paths, for the
 * memory-bound tests (a profiler's state must stop growing once every
 * path has been seen).
 *
 * Each of -t threads (default 4) runs forever: it picks the next path
 * number i, descends -d levels (default 12) through one of two functions
 * per level chosen by bit k of i (2^d distinct user stacks), and at the
 * bottom blocks ~10 us in one of four syscalls (nanosleep, clock_nanosleep,
 * select, ppoll) chosen by i too: 4 * 2^d distinct (stack, syscall) pairs.
 * Built with frame pointers; noinline and the work after each call keep
 * every level a real frame.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static int depth = 12;
static volatile unsigned long sink;

static void block_once(unsigned i)
{
	struct timespec ts = { 0, 10000 };
	switch ((i >> depth) & 3) {
	case 0:
		nanosleep(&ts, NULL);
		break;
	case 1:
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		break;
	case 2: {
		struct timeval tv = { 0, 10 };
		select(0, NULL, NULL, NULL, &tv);
		break;
	}
	default:
		ppoll(NULL, 0, &ts, NULL);
	}
}

static void level_a(unsigned i, int k);
static void level_b(unsigned i, int k);

__attribute__((noinline)) static void level_a(unsigned i, int k)
{
	if (k == depth)
		block_once(i);
	else if (i & (1u << k))
		level_b(i, k + 1);
	else
		level_a(i, k + 1);
	sink += k; /* no tail call: this frame stays on the stack */
}

__attribute__((noinline)) static void level_b(unsigned i, int k)
{
	if (k == depth)
		block_once(i);
	else if (i & (1u << k))
		level_b(i, k + 1);
	else
		level_a(i, k + 1);
	sink += 2 * k;
}

static void *run(void *arg)
{
	unsigned i = (unsigned)(unsigned long)arg * 7919;
	for (;;) {
		level_a(i, 0);
		i = (i + 1) & ((4u << depth) - 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 4, opt;
	while ((opt = getopt(argc, argv, "t:d:")) != -1) {
		switch (opt) {
		case 't':
			threads = atoi(optarg);
			break;
		case 'd':
			depth = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: manystacks [-t threads] [-d depth]\n");
			return 2;
		}
	}
	if (depth < 1 || depth > 20 || threads < 1)
		return 2;
	pthread_t t;
	for (int n = 1; n < threads; n++)
		pthread_create(&t, NULL, run, (void *)(unsigned long)n);
	run(NULL);
	return 0;
}
