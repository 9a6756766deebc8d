/*
 * cloop: a C event loop whose handler stalls it, for the event-loop stall
 * tests.
 *
 *   main thread:  run_loop()        epoll_wait(-1) on an eventfd, one
 *                                   iteration per request (idle waits);
 *                 handle_request()  usleep(30 ms) for each of the N
 *                                   requests (argv[1], default 10): every
 *                                   request stalls the loop;
 *                 handle_spin()     a 20 ms busy spin (thread CPU time)
 *                                   after handle_request on every other
 *                                   request (the 2nd, 4th, ...): N/2 times;
 *   feeder:       feed()            nanosleep(60 ms), then one request
 *                                   (write 1 to the eventfd), N times,
 *                                   and once more to end the loop.
 *
 * Before "go" the loop already waits in epoll_wait, for stdin as well (so
 * it is idle there, not in a read of stdin); the feeder is parked on its
 * gate pipe. The truth: handle_request's blocked seconds around usleep
 * and its calls (N: one stall per request), handle_spin's thread CPU and wall
 * time (count N/2; those stalls are 30 ms sleep + 20 ms spin), the loop's
 * idle epoll_wait calls and time past "go" (kind "idle"; N+1 waits) and
 * the feeder's sleeps (N+1).
 *
 * Usage: cloop [N]; prints "ready loop=TID feeder=TID".
 */
#include "../include/workload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int n_req = 10;
static int efd, gate[2];
static atomic_int feeder_tid, feeder_done;
static double feeder_secs;

static double sleep_secs, spin_cpu, spin_wall, idle_secs;
static int n_sleep, n_spin, n_idle;

__attribute__((noinline)) static void handle_request(void)
{
	double t0 = wl_mono();
	usleep(30000); /* BLOCK handle_request */
	sleep_secs += wl_mono() - t0;
	n_sleep++;
}

__attribute__((noinline)) static void handle_spin(void)
{
	volatile uint64_t x = 0;
	double c0 = wl_now(CLOCK_THREAD_CPUTIME_ID), w0 = wl_mono(), c;
	do {
		for (int i = 0; i < 500000; i++) /* BUSY handle_spin */
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		c = wl_now(CLOCK_THREAD_CPUTIME_ID);
	} while (c - c0 < 0.020);
	spin_cpu += c - c0;
	spin_wall += wl_mono() - w0;
	n_spin++;
}

/* The loop: wait, read the eventfd's count of requests, handle each. The
 * feeder's last event, after the N requests, only ends the loop: so the
 * last stalling iteration, too, ends in an epoll_wait. */
__attribute__((noinline)) static void run_loop(int ep)
{
	struct epoll_event ev;
	int done = 0;
	for (;;) {
		double t0 = wl_mono();
		int n = epoll_wait(ep, &ev, 1, -1); /* IDLE run_loop */
		idle_secs += wl_mono() - t0;
		n_idle++;
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1)
			wl_die("epoll_wait");
		uint64_t cnt;
		if (read(efd, &cnt, sizeof cnt) != sizeof cnt)
			wl_die("read eventfd");
		for (uint64_t i = 0; i < cnt; i++) {
			if (done == n_req)
				return;
			handle_request();
			if (++done % 2 == 0)
				handle_spin();
		}
	}
}

__attribute__((noinline)) static double feed(int n)
{
	double sum = 0;
	for (int i = 0; i < n; i++) {
		struct timespec ts = { 0, 60 * 1000 * 1000 };
		double t0 = wl_mono();
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		sum += wl_mono() - t0;
		uint64_t one = 1;
		if (write(efd, &one, sizeof one) != sizeof one)
			wl_die("write eventfd");
	}
	return sum;
}

static void *feeder_thread(void *arg)
{
	(void)arg;
	char c;
	atomic_store(&feeder_tid, gettid());
	if (read(gate[0], &c, 1) != 1)
		wl_die("feeder gate");
	feeder_secs = feed(n_req + 1);
	atomic_store(&feeder_done, 1);
	return NULL;
}

/* Waits in epoll_wait, like the loop, for the go line (or EOF) on stdin;
 * then takes stdin out of the set (at EOF it would stay ready). */
static void wait_go_in_loop(int ep)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 1 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) != 0) {
		wl_wait_go(); /* stdin is a file or /dev/null: no epoll */
		return;
	}
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1)
			wl_die("epoll_wait for go");
		char buf[64];
		ssize_t r = read(0, buf, sizeof buf);
		if (r <= 0 || memchr(buf, '\n', r))
			break;
	}
	if (epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL) != 0)
		wl_die("epoll_ctl del stdin");
}

int main(int argc, char **argv)
{
	if (argc > 1)
		n_req = atoi(argv[1]);
	if (n_req <= 0) {
		fprintf(stderr, "usage: cloop [N]\n");
		return 2;
	}
	int ep = epoll_create1(0);
	efd = eventfd(0, 0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
	if (ep < 0 || efd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) || pipe(gate))
		wl_die("setup");
	pthread_t ft;
	if (pthread_create(&ft, NULL, feeder_thread, NULL))
		wl_die("pthread_create");
	while (!atomic_load(&feeder_tid))
		;
	wl_wait_sleeping(atomic_load(&feeder_tid));
	int loop_tid = gettid();
	wl_ready("loop=%d feeder=%d", loop_tid, atomic_load(&feeder_tid));

	wait_go_in_loop(ep);
	char c = 'g';
	if (write(gate[1], &c, 1) != 1)
		wl_die("open gate");
	run_loop(ep);
	while (!atomic_load(&feeder_done)) /* spin: see cblock.c */
		;

	FILE *f = wl_truth_open();
	fprintf(f,
		"{\"pid\":%d,\"blocks\":["
		"{\"func\":\"handle_request\",\"syscall\":\"clock_nanosleep\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f},"
		"{\"func\":\"run_loop\",\"syscall\":\"epoll_wait\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f,\"kind\":\"idle\"},"
		"{\"func\":\"feed\",\"syscall\":\"clock_nanosleep\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f}"
		"],\"cpu\":["
		"{\"func\":\"handle_spin\",\"tid\":%d,\"seconds\":%.6f,\"wall\":%.6f,\"count\":%d}"
		"]}\n",
		(int)getpid(), loop_tid, n_sleep, sleep_secs, loop_tid, n_idle, idle_secs,
		atomic_load(&feeder_tid), n_req + 1, feeder_secs, loop_tid, spin_cpu, spin_wall, n_spin);
	wl_truth_close(f);
	exit(0);
}
