/*
 * epollidle: an event loop with nothing to do next to a thread that blocks.
 *
 *   main thread:   loop_wait()     epoll_wait on an idle eventfd, 20 ms
 *                                  timeout, -n times (default 20): idle
 *   worker_thread: worker_sleep()  nanosleep 20 ms, -n/2 times: blocking
 *
 * Past "ready", neither thread is off-CPU anywhere else.
 */
#include "../include/workload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int n_waits = 20;
static int gate[2];
static atomic_int worker_tid, worker_done;
static double worker_secs;

__attribute__((noinline)) static double loop_wait(int ep, int n)
{
	double sum = 0;
	struct epoll_event ev;
	for (int i = 0; i < n; i++) {
		double t0 = wl_mono();
		if (epoll_wait(ep, &ev, 1, 20) != 0)
			wl_die("epoll_wait: something was ready");
		sum += wl_mono() - t0;
	}
	return sum;
}

__attribute__((noinline)) static double worker_sleep(int n)
{
	return wl_sleeps(n, 20);
}

static void *worker_thread(void *arg)
{
	(void)arg;
	char c;
	atomic_store(&worker_tid, gettid());
	if (read(gate[0], &c, 1) != 1)
		wl_die("worker gate");
	worker_secs = worker_sleep(n_waits / 2);
	atomic_store(&worker_done, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n') {
			fprintf(stderr, "usage: epollidle [-n waits]\n");
			return 2;
		}
		n_waits = atoi(optarg);
	}
	int ep = epoll_create1(0), efd = eventfd(0, 0);
	struct epoll_event ev = { .events = EPOLLIN };
	if (ep < 0 || efd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) || pipe(gate))
		wl_die("setup");
	pthread_t wt;
	if (pthread_create(&wt, NULL, worker_thread, NULL))
		wl_die("pthread_create");
	while (!atomic_load(&worker_tid))
		;
	wl_wait_sleeping(atomic_load(&worker_tid));
	wl_ready("loop=%d worker=%d", (int)gettid(), atomic_load(&worker_tid));

	wl_wait_go();
	char c = 'g';
	if (write(gate[1], &c, 1) != 1)
		wl_die("open gate");
	double loop_secs = loop_wait(ep, n_waits);
	while (!atomic_load(&worker_done)) /* spin: see cblock.c */
		;

	FILE *f = wl_truth_open();
	fprintf(f,
		"{\"pid\":%d,\"blocks\":["
		"{\"func\":\"loop_wait\",\"syscall\":\"epoll_wait\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f},"
		"{\"func\":\"worker_sleep\",\"syscall\":\"clock_nanosleep\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f}"
		"],\"cpu\":[]}\n",
		(int)getpid(), (int)gettid(), n_waits, loop_secs, atomic_load(&worker_tid), n_waits / 2,
		worker_secs);
	wl_truth_close(f);
	exit(0);
}
