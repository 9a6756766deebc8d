/*
 * cnofp: the frame-pointer test of .eh_frame unwinding. Built twice by the
 * test, -fomit-frame-pointer and -fno-omit-frame-pointer; either way the
 * blocking calls go through Debian's libc, which has no frame pointers.
 *
 *   main thread    block_here(): nanosleep 20 ms, -n times (default 10);
 *   reader thread  reader_thread(): read() on a pipe a writer thread feeds
 *                  every 30 ms, -n times.
 *
 * Both functions are noinline and call libc directly (no inline helper),
 * so their frames exist only if the unwinder gets through libc.
 */
#include "../include/workload.h"

#include <pthread.h>
#include <sys/syscall.h>

static int n = 10;
static int pipefd[2];
static double reader_secs;
static int reader_tid;

__attribute__((noinline)) static double block_here(void)
{
	double sum = 0;
	for (int i = 0; i < n; i++) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		double t0 = wl_mono();
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		sum += wl_mono() - t0;
	}
	return sum;
}

__attribute__((noinline)) static void *reader_thread(void *arg)
{
	(void)arg;
	reader_tid = (int)syscall(SYS_gettid);
	char c;
	for (int i = 0; i < n; i++) {
		double t0 = wl_mono();
		if (read(pipefd[0], &c, 1) != 1)
			wl_die("read");
		reader_secs += wl_mono() - t0;
	}
	return NULL;
}

static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < n; i++) {
		struct timespec ts = { 0, 30 * 1000 * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		if (write(pipefd[1], "x", 1) != 1)
			wl_die("write");
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "-n"))
		n = atoi(argv[2]);
	if (pipe(pipefd))
		wl_die("pipe");
	wl_ready("main=%d", (int)getpid());
	wl_wait_go();
	pthread_t r, w;
	pthread_create(&r, NULL, reader_thread, NULL);
	pthread_create(&w, NULL, writer, NULL);
	double main_secs = block_here();
	pthread_join(r, NULL);
	pthread_join(w, NULL);
	FILE *f = wl_truth_open();
	fprintf(f, "{\"pid\":%d,\"blocks\":["
		   "{\"func\":\"block_here\",\"syscall\":\"clock_nanosleep\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f},"
		   "{\"func\":\"reader_thread\",\"syscall\":\"read\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f}"
		   "],\"cpu\":[]}\n",
		(int)getpid(), (int)getpid(), n, main_secs, reader_tid, n, reader_secs);
	wl_truth_close(f);
	return 0;
}
