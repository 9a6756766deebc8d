/*
 * cpuhog: two threads pinned to one CPU (-c, default 0) spin for -s
 * seconds of wall time each (default 1). They compete for that CPU, so each
 * spends about half its wall time waiting in the run queue and never
 * blocks. Truth: per thread, on-CPU time (CLOCK_THREAD_CPUTIME_ID) and wall
 * time of the spin; wall - on-CPU is its run-queue time.
 */
#include "../include/workload.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static double seconds = 1;
static int cpu;
static int gate[2];

struct spinner {
	pthread_t thread;
	atomic_int tid;
	double cpu, wall;
};

static void pin(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set))
		wl_die("sched_setaffinity");
}

__attribute__((noinline)) static void spin(struct spinner *s)
{
	volatile unsigned long sink = 0;
	double t0 = wl_mono(), c0 = wl_now(CLOCK_THREAD_CPUTIME_ID), t;
	do {
		for (int i = 0; i < 1000; i++)
			sink += i;
		t = wl_mono();
	} while (t - t0 < seconds);
	s->cpu = wl_now(CLOCK_THREAD_CPUTIME_ID) - c0;
	s->wall = t - t0;
}

static void *spinner_thread(void *arg)
{
	struct spinner *s = arg;
	char c;
	pin();
	atomic_store(&s->tid, gettid());
	if (read(gate[0], &c, 1) != 1)
		wl_die("gate");
	spin(s);
	return NULL;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "s:c:")) != -1) {
		switch (opt) {
		case 's':
			seconds = atof(optarg);
			break;
		case 'c':
			cpu = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: cpuhog [-s seconds] [-c cpu]\n");
			return 2;
		}
	}
	if (pipe(gate))
		wl_die("pipe");
	static struct spinner sp[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&sp[i].thread, NULL, spinner_thread, &sp[i]))
			wl_die("pthread_create");
	for (int i = 0; i < 2; i++) {
		while (!atomic_load(&sp[i].tid))
			;
		wl_wait_sleeping(atomic_load(&sp[i].tid));
	}
	wl_ready("spin1=%d spin2=%d", atomic_load(&sp[0].tid), atomic_load(&sp[1].tid));

	wl_wait_go();
	if (write(gate[1], "gg", 2) != 2)
		wl_die("open gate");
	for (int i = 0; i < 2; i++)
		pthread_join(sp[i].thread, NULL);

	FILE *f = wl_truth_open();
	fprintf(f, "{\"pid\":%d,\"blocks\":[],\"cpu\":[", (int)getpid());
	for (int i = 0; i < 2; i++)
		fprintf(f, "%s{\"func\":\"spin\",\"tid\":%d,\"seconds\":%.6f,\"wall\":%.6f}",
			i ? "," : "", atomic_load(&sp[i].tid), sp[i].cpu, sp[i].wall);
	fprintf(f, "]}\n");
	wl_truth_close(f);
	return 0;
}
