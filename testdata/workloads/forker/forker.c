/*
 * forker: for `blockprof record -- CMD`, which starts CMD itself with the
 * profiler already attached; so, unlike the other workloads, no ready/go
 * handshake and no start-up sleep (one would hide a profiler that misses
 * the command's first blocking calls).
 *
 * The parent forks 2 children; each process calls a named function
 * (child_block / parent_block) that nanosleeps 20 ms, -n times (default 10).
 * Every process blocks nowhere else: the parent reaps its children with
 * WNOHANG in a sched_yield loop, and the children report their times over
 * a pipe that never fills. Truth: one entry per process, with its pid (= its tid).
 */
#include "../include/workload.h"

#include <sched.h>
#include <sys/wait.h>

struct result {
	int pid;
	int count;
	double seconds;
};

static int n_sleep = 10;

static double sleep_n(int n)
{
	return wl_sleeps(n, 20);
}

/* no_icf: the two have identical bodies, and gcc -O2 would otherwise fold
 * them into one symbol. */
__attribute__((noinline, no_icf)) static double child_block(int n)
{
	return sleep_n(n);
}

__attribute__((noinline, no_icf)) static double parent_block(int n)
{
	return sleep_n(n);
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		switch (opt) {
		case 'n':
			n_sleep = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: forker [-n sleeps]\n");
			return 2;
		}
	}
	int results[2];
	if (pipe(results))
		wl_die("pipe");
	fflush(NULL); /* children must not flush the parent's buffers again */
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			wl_die("fork");
		if (kids[i] == 0) {
			struct result r = { getpid(), n_sleep, child_block(n_sleep) };
			if (write(results[1], &r, sizeof r) != sizeof r)
				wl_die("child write");
			_exit(0);
		}
	}
	struct result all[3] = { { getpid(), n_sleep, parent_block(n_sleep) } };
	for (int left = 2; left > 0;) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p < 0)
			wl_die("waitpid");
		if (p == 0) {
			sched_yield(); /* stays runnable: not a block */
			continue;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "child %d failed\n", (int)p);
			return 1;
		}
		left--;
	}
	/* Both children wrote before exiting: these reads do not wait. */
	for (int i = 1; i < 3; i++)
		if (read(results[0], &all[i], sizeof all[i]) != sizeof all[i])
			wl_die("read results");

	FILE *f = wl_truth_open();
	fprintf(f, "{\"pid\":%d,\"blocks\":[", (int)getpid());
	for (int i = 0; i < 3; i++)
		fprintf(f,
			"%s{\"func\":\"%s\",\"syscall\":\"nanosleep\",\"pid\":%d,\"tid\":%d,\"count\":%d,\"seconds\":%.6f}",
			i ? "," : "", i ? "child_block" : "parent_block", all[i].pid, all[i].pid,
			all[i].count, all[i].seconds);
	fprintf(f, "],\"cpu\":[]}\n");
	wl_truth_close(f);
	return 0;
}
