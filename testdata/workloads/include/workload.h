/*
 * Shared helpers of the C workloads: the ready/go/truth protocol that
 * internal/testutil drives, and a monotonic clock.
 *
 * Protocol: once its threads exist and are parked, a workload prints
 * "ready [role=TID ...]" on stdout, then waits for one line (or EOF) on
 * stdin, runs its measured phase, and writes its ground truth as JSON to
 * the file named by $BLOCKPROF_TRUTH (stdout when unset).
 */
#ifndef BLOCKPROF_WORKLOAD_H
#define BLOCKPROF_WORKLOAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static __attribute__((unused)) void wl_die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

static __attribute__((unused)) double wl_now(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static __attribute__((unused)) double wl_mono(void)
{
	return wl_now(CLOCK_MONOTONIC);
}

/* n nanosleeps of ms each (resumed after EINTR); returns the seconds they
 * took. Always inlined, so the named function that calls it is the one on
 * the stack, as the truth says. */
static inline __attribute__((always_inline, unused)) double wl_sleeps(int n, long ms)
{
	double sum = 0;
	for (int i = 0; i < n; i++) {
		struct timespec ts = { 0, ms * 1000 * 1000 };
		double t0 = wl_mono();
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		sum += wl_mono() - t0;
	}
	return sum;
}

/* Sleeps until the thread is in an interruptible or uninterruptible
 * sleep, so that a profiler attached after "ready" never sees the start of
 * the wait that parks it (that wait is not part of the truth). */
static __attribute__((unused)) void wl_wait_sleeping(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		if (!f)
			wl_die(path);
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = 0;
		/* comm may hold spaces and parentheses: the state follows the last ')'. */
		char *p = strrchr(buf, ')');
		if (p && (p[2] == 'S' || p[2] == 'D'))
			return;
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	fprintf(stderr, "thread %d never went to sleep\n", (int)tid);
	exit(1);
}

/* "ready" plus the caller's role=TID pairs, flushed so a pipe sees it now. */
static __attribute__((unused)) void wl_ready(const char *fmt, ...)
{
	va_list ap;
	fputs("ready", stdout);
	if (fmt && *fmt) {
		fputc(' ', stdout);
		va_start(ap, fmt);
		vfprintf(stdout, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stdout);
	fflush(stdout);
}

/* One line or EOF on stdin starts the measured phase. Raw read(2), so no
 * stdio buffer swallows anything and the wait is one plain syscall. */
static __attribute__((unused)) void wl_wait_go(void)
{
	char c;
	for (;;) {
		ssize_t n = read(0, &c, 1);
		if (n == 0 || (n == 1 && c == '\n'))
			return;
		if (n < 0 && errno != EINTR)
			wl_die("read stdin");
		if (n < 0)
			return; /* a signal (SIGTERM) ends the wait too */
	}
}

static __attribute__((unused)) FILE *wl_truth_open(void)
{
	const char *path = getenv("BLOCKPROF_TRUTH");
	if (!path || !*path)
		return stdout;
	FILE *f = fopen(path, "w");
	if (!f)
		wl_die(path);
	return f;
}

static __attribute__((unused)) void wl_truth_close(FILE *f)
{
	if (fflush(f) != 0 || (f != stdout && fclose(f) != 0))
		wl_die("write truth");
}

#endif
