/*
 * cwait: threads that each block on one known thing, for the "blocked on
 * what" tests. Every thread measures its own blocking calls with the
 * monotonic clock and reports what it waited on, as blockprof should label
 * it:
 *
 *   connector  connect() to a loopback listener whose accept queue is full:
 *              the SYN is dropped and retried after ~1 s;
 *   syncer     fsync() of a file after 8 MiB of writes, 4 times;
 *   sleeper    nanosleep(30 ms), 10 times;
 *   waiter     pthread_mutex_lock() on a mutex that holder keeps 30 ms,
 *              8 times (the holder's unlock is the wakeup);
 *   reuser     read() on fd N = FIFO a (4 times), then N = FIFO b via dup2
 *              (4 times): fd reuse must not mix the two up;
 *   opener     open() of a FIFO, which blocks until a writer opens it;
 *   worker1-3  an idle thread pool: pthread_cond_wait for tasks that a
 *              producer queues every 100 ms (the workers are idle).
 *
 * Protocol as in include/workload.h: ready line with role=TID pairs, go on
 * stdin, truth JSON.
 */
#include "../include/workload.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdint.h>
#include <sys/syscall.h>

#define NWORKERS 3

static pthread_barrier_t start;
/* Threads that reached the start barrier: "ready" waits for all of them,
 * so none is still on its way there (and blocks there only after a
 * profiler attached) when the measured run begins. */
static int arrived;

static void start_wait(void)
{
	__atomic_add_fetch(&arrived, 1, __ATOMIC_SEQ_CST);
	pthread_barrier_wait(&start);
}
static char dir[64];
static char fifo_a[96], fifo_b[96], fifo_open[96], datafile[96];

struct result {
	const char *func, *syscall;
	int tid, count;
	double seconds;
	char target[160];
	int waker_tid;
	const char *kind;
};

#define MAXRES 16
static struct result res[MAXRES];
static int nres;
static pthread_mutex_t res_mu = PTHREAD_MUTEX_INITIALIZER;

static void report(struct result r)
{
	pthread_mutex_lock(&res_mu);
	res[nres++] = r;
	pthread_mutex_unlock(&res_mu);
}

static int tid(void)
{
	return (int)syscall(SYS_gettid);
}

/* ---- connector ---- */
static int listen_port;
static int lfd;

static void *connector(void *arg)
{
	(void)arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(listen_port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	start_wait();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	double t0 = wl_mono();
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		wl_die("connect");
	double secs = wl_mono() - t0;
	struct sockaddr_in l;
	socklen_t ll = sizeof l;
	getsockname(fd, (struct sockaddr *)&l, &ll);
	struct result r = { "connector", "connect", tid(), 1, secs };
	snprintf(r.target, sizeof r.target, "tcp 127.0.0.1:%d->127.0.0.1:%d", ntohs(l.sin_port), listen_port);
	report(r);
	return NULL;
}

/* ---- syncer ---- */
static void *syncer(void *arg)
{
	(void)arg;
	static char buf[1 << 20];
	memset(buf, 'x', sizeof buf);
	int fd = open(datafile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		wl_die("open data");
	start_wait();
	struct result r = { "syncer", "fsync", tid(), 4, 0 };
	for (int i = 0; i < r.count; i++) {
		for (int j = 0; j < 8; j++)
			if (write(fd, buf, sizeof buf) != sizeof buf)
				wl_die("write");
		double t0 = wl_mono();
		if (fsync(fd) != 0)
			wl_die("fsync");
		r.seconds += wl_mono() - t0;
	}
	snprintf(r.target, sizeof r.target, "file %s", datafile);
	report(r);
	return NULL;
}

/* ---- sleeper ---- */
static void *sleeper(void *arg)
{
	(void)arg;
	start_wait();
	struct result r = { "sleeper", "clock_nanosleep", tid(), 10, 0 }; /* glibc's nanosleep */
	r.seconds = wl_sleeps(r.count, 30);
	snprintf(r.target, sizeof r.target, "sleep 30ms");
	report(r);
	return NULL;
}

/* ---- holder and waiter ---- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sem_t held, released;
static int holder_tid;

static void *holder(void *arg)
{
	(void)arg;
	holder_tid = tid();
	start_wait();
	for (int i = 0; i < 8; i++) {
		pthread_mutex_lock(&mu);
		sem_post(&held);
		struct timespec ts = { 0, 30 * 1000 * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		pthread_mutex_unlock(&mu);
		sem_wait(&released);
	}
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	start_wait();
	struct result r = { "waiter", "futex", tid(), 8, 0 };
	for (int i = 0; i < r.count; i++) {
		sem_wait(&held);
		double t0 = wl_mono();
		pthread_mutex_lock(&mu);
		r.seconds += wl_mono() - t0;
		pthread_mutex_unlock(&mu);
		sem_post(&released);
	}
	/* glibc waits on the mutex word, the first int of pthread_mutex_t. */
	snprintf(r.target, sizeof r.target, "futex %#lx wait", (unsigned long)(uintptr_t)&mu);
	r.waker_tid = holder_tid;
	report(r);
	return NULL;
}

/* ---- reuser and its feeder ---- */
static int reuse_fd, write_a, write_b;

/* Write ends are opened before anyone reads: a FIFO without writers
 * reads as end of file instead of blocking. */
static void feed(int fd, int n)
{
	for (int i = 0; i < n; i++) {
		struct timespec ts = { 0, 40 * 1000 * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		if (write(fd, "x", 1) != 1)
			wl_die("write fifo");
	}
}

static void *feeder(void *arg)
{
	(void)arg;
	start_wait();
	feed(write_a, 4);
	feed(write_b, 4);
	return NULL;
}

static double read_n(int fd, int n)
{
	double sum = 0;
	char c;
	for (int i = 0; i < n; i++) {
		double t0 = wl_mono();
		if (read(fd, &c, 1) != 1)
			wl_die("read fifo");
		sum += wl_mono() - t0;
	}
	return sum;
}

static void *reuser(void *arg)
{
	(void)arg;
	start_wait();
	struct result a = { "reuser", "read", tid(), 4, 0 };
	a.seconds = read_n(reuse_fd, 4);
	snprintf(a.target, sizeof a.target, "fifo %s", fifo_a);
	/* The same fd number, now another FIFO. */
	int b = open(fifo_b, O_RDONLY | O_NONBLOCK);
	if (b < 0 || dup2(b, reuse_fd) < 0)
		wl_die("reopen fifo b");
	close(b);
	fcntl(reuse_fd, F_SETFL, 0);
	struct result rb = { "reuser", "read", tid(), 4, 0 };
	rb.seconds = read_n(reuse_fd, 4);
	snprintf(rb.target, sizeof rb.target, "fifo %s", fifo_b);
	report(a);
	report(rb);
	return NULL;
}

/* ---- opener ---- */
static void *opener(void *arg)
{
	(void)arg;
	start_wait();
	struct result r = { "opener", "openat", tid(), 1, 0 };
	double t0 = wl_mono();
	int fd = open(fifo_open, O_RDONLY); /* blocks until a writer opens */
	r.seconds = wl_mono() - t0;
	if (fd < 0)
		wl_die("open fifo_open");
	close(fd);
	snprintf(r.target, sizeof r.target, "path %s", fifo_open);
	report(r);
	return NULL;
}

static void *open_writer(void *arg)
{
	(void)arg;
	start_wait();
	struct timespec ts = { 0, 150 * 1000 * 1000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	int fd = open(fifo_open, O_WRONLY);
	if (fd < 0)
		wl_die("open fifo_open for writing");
	close(fd);
	return NULL;
}

/* ---- an idle thread pool ---- */
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static int queued, stopping;
static int worker_tids[NWORKERS];

static void *worker(void *arg)
{
	worker_tids[(long)arg] = tid();
	start_wait();
	pthread_mutex_lock(&qmu);
	for (;;) {
		while (!queued && !stopping)
			pthread_cond_wait(&qcond, &qmu);
		if (stopping)
			break;
		queued--; /* the task itself takes no time */
	}
	pthread_mutex_unlock(&qmu);
	return NULL;
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/cwait-XXXXXX");
	if (!mkdtemp(dir))
		wl_die("mkdtemp");
	snprintf(fifo_a, sizeof fifo_a, "%s/fifo-a", dir);
	snprintf(fifo_b, sizeof fifo_b, "%s/fifo-b", dir);
	snprintf(fifo_open, sizeof fifo_open, "%s/fifo-open", dir);
	snprintf(datafile, sizeof datafile, "%s/data", dir);
	if (mkfifo(fifo_a, 0600) || mkfifo(fifo_b, 0600) || mkfifo(fifo_open, 0600))
		wl_die("mkfifo");
	/* The reuser's fd: FIFO a, opened non-blocking so no writer is
	 * needed yet, then made blocking. */
	reuse_fd = open(fifo_a, O_RDONLY | O_NONBLOCK);
	if (reuse_fd < 0)
		wl_die("open fifo a");
	fcntl(reuse_fd, F_SETFL, 0);
	write_a = open(fifo_a, O_WRONLY);
	if (open(fifo_b, O_RDONLY | O_NONBLOCK) < 0) /* so the write end opens */
		wl_die("open fifo b");
	write_b = open(fifo_b, O_WRONLY);
	if (write_a < 0 || write_b < 0)
		wl_die("open fifo write ends");

	/* A listener that never accepts, its queue filled by one connection. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 0))
		wl_die("listen");
	socklen_t al = sizeof a;
	getsockname(lfd, (struct sockaddr *)&a, &al);
	listen_port = ntohs(a.sin_port);
	int filler = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(filler, (struct sockaddr *)&a, sizeof a))
		wl_die("connect filler");

	sem_init(&held, 0, 0);
	sem_init(&released, 0, 0);
	pthread_barrier_init(&start, NULL, 10 + NWORKERS); /* and main */
	void *(*fns[])(void *) = { connector, syncer, sleeper, holder, waiter, feeder, reuser, opener, open_writer };
	const char *names[] = { "connector", "syncer", "sleeper", "holder", "waiter", "feeder", "reuser", "opener", "open_writer" };
	pthread_t th[9 + NWORKERS];
	for (int i = 0; i < 9; i++) {
		pthread_create(&th[i], NULL, fns[i], NULL);
		pthread_setname_np(th[i], names[i]);
	}
	for (long i = 0; i < NWORKERS; i++) {
		pthread_create(&th[9 + i], NULL, worker, (void *)i);
		pthread_setname_np(th[9 + i], "worker");
	}
	while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) < 9 + NWORKERS)
		usleep(1000);
	usleep(20000); /* from the barrier into the futex wait */
	wl_ready("");
	wl_wait_go();
	double t0 = wl_mono();
	pthread_barrier_wait(&start);

	/* Let the connector's SYN be dropped, then make room: the retry
	 * (about 1 s after the first SYN) gets in. */
	struct timespec ts = { 0, 300 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	int acc = accept(lfd, NULL, NULL);
	if (acc < 0)
		wl_die("accept");

	/* Producer: a task every 100 ms for 1.2 s; the workers idle between. */
	for (int i = 0; i < 12; i++) {
		struct timespec p = { 0, 100 * 1000 * 1000 };
		nanosleep(&p, NULL);
		pthread_mutex_lock(&qmu);
		queued++;
		pthread_cond_signal(&qcond);
		pthread_mutex_unlock(&qmu);
	}
	for (int i = 0; i < 9; i++)
		pthread_join(th[i], NULL);
	/* Worker idle time is not measured call by call: each worker waits
	 * the whole run less the moments it takes a task. */
	double wall = wl_mono() - t0;
	pthread_mutex_lock(&qmu);
	stopping = 1;
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&qmu);
	for (int i = 0; i < NWORKERS; i++)
		pthread_join(th[9 + i], NULL);

	FILE *f = wl_truth_open();
	fprintf(f, "{\"pid\":%d,\"blocks\":[", (int)getpid());
	for (int i = 0; i < nres; i++) {
		struct result *r = &res[i];
		fprintf(f, "%s{\"func\":\"%s\",\"syscall\":\"%s\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f,\"target\":\"%s\"",
			i ? "," : "", r->func, r->syscall, r->tid, r->count, r->seconds, r->target);
		if (r->waker_tid)
			fprintf(f, ",\"waker_tid\":%d", r->waker_tid);
		fprintf(f, "}");
	}
	for (int i = 0; i < NWORKERS; i++)
		fprintf(f, ",{\"func\":\"worker\",\"syscall\":\"futex\",\"tid\":%d,\"count\":0,\"seconds\":%.6f,\"kind\":\"idle\"}",
			worker_tids[i], wall);
	fprintf(f, "],\"cpu\":[]}\n");
	wl_truth_close(f);
	unlink(fifo_a);
	unlink(fifo_b);
	unlink(fifo_open);
	unlink(datafile);
	rmdir(dir);
	return 0;
}
