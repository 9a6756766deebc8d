/*
 * tcprecv: a client that blocks in recv on a loopback TCP socket whose peer
 * answers each request after 20 ms.
 *
 *   main thread:   client_recv()  send 1 byte, recv 1 byte, -n times (default 10)
 *   server_thread: sleeps 20 ms per request, then answers (not in the truth)
 *
 * The truth names the connection: local and remote address:port.
 */
#include "../include/workload.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

static int n_req = 10;
static int lsock;
static atomic_int server_tid;

static void *server_thread(void *arg)
{
	(void)arg;
	atomic_store(&server_tid, gettid());
	int c = accept(lsock, NULL, NULL);
	if (c < 0)
		wl_die("accept");
	char b;
	for (int i = 0; i < n_req; i++) {
		if (recv(c, &b, 1, 0) != 1)
			wl_die("server recv");
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		if (send(c, &b, 1, 0) != 1)
			wl_die("server send");
	}
	return NULL;
}

__attribute__((noinline)) static double client_recv(int s)
{
	double sum = 0;
	char b = 'x';
	for (int i = 0; i < n_req; i++) {
		if (send(s, &b, 1, 0) != 1)
			wl_die("client send");
		double t0 = wl_mono();
		if (recv(s, &b, 1, 0) != 1)
			wl_die("client recv");
		sum += wl_mono() - t0;
	}
	return sum;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n') {
			fprintf(stderr, "usage: tcprecv [-n requests]\n");
			return 2;
		}
		n_req = atoi(optarg);
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	lsock = socket(AF_INET, SOCK_STREAM, 0);
	if (lsock < 0 || bind(lsock, (void *)&a, sizeof(a)) || listen(lsock, 1) ||
	    getsockname(lsock, (void *)&a, &alen))
		wl_die("listen");
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (void *)&a, sizeof(a)))
		wl_die("connect");
	struct sockaddr_in local;
	alen = sizeof(local);
	if (getsockname(s, (void *)&local, &alen))
		wl_die("getsockname");
	pthread_t st;
	if (pthread_create(&st, NULL, server_thread, NULL))
		wl_die("pthread_create");
	while (!atomic_load(&server_tid))
		;
	wl_wait_sleeping(atomic_load(&server_tid)); /* in accept: the connection is queued */
	wl_ready("client=%d server=%d", (int)gettid(), atomic_load(&server_tid));

	wl_wait_go();
	double secs = client_recv(s);

	FILE *f = wl_truth_open();
	fprintf(f,
		"{\"pid\":%d,\"blocks\":["
		"{\"func\":\"client_recv\",\"syscall\":\"recvfrom\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f,"
		"\"target\":\"tcp 127.0.0.1:%d->127.0.0.1:%d\"}"
		"],\"cpu\":[]}\n",
		(int)getpid(), (int)gettid(), n_req, secs, ntohs(local.sin_port), ntohs(a.sin_port));
	wl_truth_close(f);
	exit(0);
}
