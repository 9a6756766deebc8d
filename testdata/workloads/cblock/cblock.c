/*
 * cblock: a C program that blocks in known places for known times.
 *
 *   main thread:    block_here()    nanosleep 20 ms, -n times (default 20)
 *   reader_thread:  reads 1 byte from a pipe, -r times (default 10)
 *   writer_thread:  writes 1 byte every 30 ms (not part of the truth)
 *
 * Apart from the gate waits, which start before "ready" and so before any
 * profiler attaches, the main and reader threads block nowhere else: a
 * profiler's whole-thread off-CPU time must match the truth.
 * Built by tests with and without frame pointers.
 */
#include "../include/workload.h"

#include <pthread.h>
#include <stdatomic.h>

static int n_sleep = 20, n_read = 10;
static int data[2], gate[2];
static atomic_int reader_tid, writer_tid, reader_done;
static double reader_secs;

__attribute__((noinline)) static double block_here(int n)
{
	return wl_sleeps(n, 20);
}

__attribute__((noinline)) static void *reader_thread(void *arg)
{
	(void)arg;
	char c;
	atomic_store(&reader_tid, gettid());
	/* The first byte is the gate: it arrives at "go". Not measured. */
	if (read(data[0], &c, 1) != 1)
		wl_die("reader gate");
	double sum = 0;
	for (int i = 0; i < n_read; i++) {
		double t0 = wl_mono();
		if (read(data[0], &c, 1) != 1)
			wl_die("reader read");
		sum += wl_mono() - t0;
	}
	reader_secs = sum;
	atomic_store(&reader_done, 1);
	return NULL;
}

__attribute__((noinline)) static void *writer_thread(void *arg)
{
	(void)arg;
	char c = 'x';
	atomic_store(&writer_tid, gettid());
	if (read(gate[0], &c, 1) != 1)
		wl_die("writer gate");
	for (int i = 0; i <= n_read; i++) {
		if (i > 0) {
			struct timespec ts = { 0, 30 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (write(data[1], &c, 1) != 1)
			wl_die("writer write");
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		switch (opt) {
		case 'n':
			n_sleep = atoi(optarg);
			break;
		case 'r':
			n_read = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: cblock [-n sleeps] [-r reads]\n");
			return 2;
		}
	}
	if (pipe(data) || pipe(gate))
		wl_die("pipe");
	pthread_t rt, wt;
	if (pthread_create(&rt, NULL, reader_thread, NULL) ||
	    pthread_create(&wt, NULL, writer_thread, NULL))
		wl_die("pthread_create");
	while (!atomic_load(&reader_tid) || !atomic_load(&writer_tid))
		;
	wl_wait_sleeping(atomic_load(&reader_tid));
	wl_wait_sleeping(atomic_load(&writer_tid));
	wl_ready("main=%d reader=%d writer=%d", (int)gettid(), atomic_load(&reader_tid),
		 atomic_load(&writer_tid));

	wl_wait_go();
	char c = 'g';
	if (write(gate[1], &c, 1) != 1)
		wl_die("open gate");
	double main_secs = block_here(n_sleep);
	/* Spin, not join: a blocking wait here would add off-CPU time to the
	 * main thread that the truth does not describe. */
	while (!atomic_load(&reader_done))
		;

	FILE *f = wl_truth_open();
	fprintf(f,
		"{\"pid\":%d,\"blocks\":["
		"{\"func\":\"block_here\",\"syscall\":\"nanosleep\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f},"
		"{\"func\":\"reader_thread\",\"syscall\":\"read\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f}"
		"],\"cpu\":[]}\n",
		(int)getpid(), (int)gettid(), n_sleep, main_secs, atomic_load(&reader_tid), n_read,
		reader_secs);
	wl_truth_close(f);
	/* The writer may still be in its last sleep: exit ends it. */
	exit(0);
}
