/*
 * pingpong: two threads bounce one byte over two pipes as fast as they can,
 * for -d seconds (default 2) or until SIGTERM/SIGINT. Both are pinned to
 * one CPU (-c, default 0) unless -p is given, so every round trip is two
 * voluntary context switches on that CPU: the worst case for a profiler
 * that does work on every switch.
 *
 * Prints "roundtrips_per_sec=N", "ctxt_switches_per_sec=N" (all threads,
 * voluntary and not) and the raw count and seconds on stdout when done.
 * The truth has the round-trip count per thread; blocked time is not
 * measured: clock reads on every read would perturb the benchmark.
 */
#include "../include/workload.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>

static double duration = 2;
static int cpu, pin_threads = 1;
static int a2b[2], b2a[2], gate[2];
static atomic_int ping_tid, pong_tid;
static volatile sig_atomic_t stop;
static long roundtrips, pongs;
static double elapsed;
static long switches;

/* Context switches of the whole process (all threads) so far. */
static long process_switches(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void pin(void)
{
	if (!pin_threads)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set))
		wl_die("sched_setaffinity");
}

__attribute__((noinline)) static void *ping(void *arg)
{
	(void)arg;
	char c = 'p';
	pin();
	atomic_store(&ping_tid, gettid());
	if (read(gate[0], &c, 1) != 1)
		wl_die("ping gate");
	long s0 = process_switches();
	double t0 = wl_mono(), t = t0;
	long n = 0;
	while (!stop) {
		if (write(a2b[1], &c, 1) != 1 || read(b2a[0], &c, 1) != 1)
			break;
		/* The clock every 256 round trips: cheap next to 512 switches. */
		if ((++n & 255) == 0 && (t = wl_mono()) - t0 >= duration)
			break;
	}
	t = wl_mono();
	switches = process_switches() - s0;
	roundtrips = n;
	elapsed = t - t0;
	close(a2b[1]); /* pong sees EOF and ends */
	return NULL;
}

__attribute__((noinline)) static void *pong(void *arg)
{
	(void)arg;
	char c;
	pin();
	atomic_store(&pong_tid, gettid());
	long n = 0;
	while (read(a2b[0], &c, 1) == 1) {
		if (write(b2a[1], &c, 1) != 1)
			break;
		n++;
	}
	pongs = n;
	return NULL;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "d:c:p")) != -1) {
		switch (opt) {
		case 'd':
			duration = atof(optarg);
			break;
		case 'c':
			cpu = atoi(optarg);
			break;
		case 'p':
			pin_threads = 0;
			break;
		default:
			fprintf(stderr, "usage: pingpong [-d seconds] [-c cpu] [-p]\n");
			return 2;
		}
	}
	/* No SA_RESTART: SIGTERM interrupts the wait for "go" as well. */
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (pipe(a2b) || pipe(b2a) || pipe(gate))
		wl_die("pipe");
	pthread_t pi, po;
	if (pthread_create(&po, NULL, pong, NULL) || pthread_create(&pi, NULL, ping, NULL))
		wl_die("pthread_create");
	while (!atomic_load(&ping_tid) || !atomic_load(&pong_tid))
		;
	wl_wait_sleeping(atomic_load(&ping_tid));
	wl_wait_sleeping(atomic_load(&pong_tid));
	wl_ready("ping=%d pong=%d", atomic_load(&ping_tid), atomic_load(&pong_tid));

	wl_wait_go();
	if (write(gate[1], "g", 1) != 1)
		wl_die("open gate");
	pthread_join(pi, NULL);
	pthread_join(po, NULL);

	printf("roundtrips=%ld seconds=%.6f\n", roundtrips, elapsed);
	printf("roundtrips_per_sec=%.0f\n", elapsed > 0 ? roundtrips / elapsed : 0);
	printf("ctxt_switches_per_sec=%.0f\n", elapsed > 0 ? switches / elapsed : 0);
	fflush(stdout);
	FILE *f = wl_truth_open();
	fprintf(f,
		"{\"pid\":%d,\"blocks\":["
		"{\"func\":\"ping\",\"syscall\":\"read\",\"tid\":%d,\"count\":%ld,\"seconds\":0},"
		"{\"func\":\"pong\",\"syscall\":\"read\",\"tid\":%d,\"count\":%ld,\"seconds\":0}"
		"],\"cpu\":[]}\n",
		(int)getpid(), atomic_load(&ping_tid), roundtrips, atomic_load(&pong_tid), pongs);
	wl_truth_close(f);
	return 0;
}
