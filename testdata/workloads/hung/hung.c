/*
 * hung: a process that is stuck before any profiler arrives.
 *
 *   - lock_ab and lock_ba: two threads deadlocked, each holding one pthread
 *     mutex and waiting for the other's;
 *   - read_pipe: a read of a pipe nobody writes to;
 *   - sleep_long: nanosleep of an hour.
 *
 * Once all four are blocked it prints, on one line of stdout, JSON with
 * each wait: function, thread, CLOCK_MONOTONIC seconds at which it began
 * waiting (read just before the blocking call), syscall, and for the
 * mutex waits the thread that holds the mutex. The main thread then waits
 * in pause() until it is killed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static pthread_mutex_t ma = PTHREAD_MUTEX_INITIALIZER, mb = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold;
static volatile int tid_ab, tid_ba, tid_read, tid_sleep;
static volatile double since_ab, since_ba, since_read, since_sleep;
static int pipefd[2];
/* Written after each blocking call (never reached): the call is then no
 * tail call, and its caller's frame stays on the stack. */
static volatile int reached;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int gettid_(void) { return (int)syscall(SYS_gettid); }

__attribute__((noinline)) static void lock_ab(void)
{
	pthread_mutex_lock(&ma);
	pthread_barrier_wait(&both_hold);
	since_ab = mono();
	pthread_mutex_lock(&mb); /* never returns: lock_ba holds mb */
	reached = 1;
}

__attribute__((noinline)) static void lock_ba(void)
{
	pthread_mutex_lock(&mb);
	pthread_barrier_wait(&both_hold);
	since_ba = mono();
	pthread_mutex_lock(&ma); /* never returns: lock_ab holds ma */
	reached = 1;
}

__attribute__((noinline)) static void read_pipe(void)
{
	char c;
	since_read = mono();
	if (read(pipefd[0], &c, 1) >= 0) /* nobody writes; the write end stays open */
		return;
}

__attribute__((noinline)) static void sleep_long(void)
{
	struct timespec ts = {3600, 0};
	since_sleep = mono();
	nanosleep(&ts, NULL);
	reached = 1;
}

static void *run(void *arg)
{
	switch ((long)arg) {
	case 0: tid_ab = gettid_(); lock_ab(); break;
	case 1: tid_ba = gettid_(); lock_ba(); break;
	case 2: tid_read = gettid_(); read_pipe(); break;
	case 3: tid_sleep = gettid_(); sleep_long(); break;
	}
	return NULL;
}

int main(void)
{
	if (pipe(pipefd))
		return 1;
	pthread_barrier_init(&both_hold, NULL, 2);
	pthread_t th[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, run, (void *)i);
	/* Let every thread reach its wait. */
	while (!since_ab || !since_ba || !since_read || !since_sleep)
		usleep(1000);
	usleep(200000);
	printf("{\"pid\": %d, \"waits\": ["
	       "{\"func\": \"lock_ab\", \"tid\": %d, \"since\": %.6f, \"syscall\": \"futex\", \"holder\": %d}, "
	       "{\"func\": \"lock_ba\", \"tid\": %d, \"since\": %.6f, \"syscall\": \"futex\", \"holder\": %d}, "
	       "{\"func\": \"read_pipe\", \"tid\": %d, \"since\": %.6f, \"syscall\": \"read\"}, "
	       "{\"func\": \"sleep_long\", \"tid\": %d, \"since\": %.6f, \"syscall\": \"clock_nanosleep\"}]}\n",
	       getpid(), tid_ab, since_ab, tid_ba, tid_ba, since_ba, tid_ab, tid_read, since_read, tid_sleep,
	       since_sleep);
	fflush(stdout);
	for (;;)
		pause();
}
