"""The auxiliary process of loop_app.py: everything the profiled event loop
talks to, in a process of its own so that none of it is a thread of the
profiled process.

  usage: python3 loop_aux.py SERVER_PORT FIFO_PATH N KINDS

  cache server  a TCP listener on 127.0.0.1:0 that answers each 1-byte
                request 30 ms later (time.sleep(0.03), then one byte);
  FIFO feeder   holds FIFO_PATH open for writing and writes one byte 40 ms
                after each FIFO request is sent, so loop_app's read of it
                blocks for just under 40 ms (a feeder writing every 40 ms
                regardless would fill the pipe between requests, and the
                reads would not block at all);
  load          one connection to loop_app's server on SERVER_PORT: N
                rounds of one request of each kind in KINDS (one byte
                each), one at a time, each reply awaited, with 15 ms
                between a reply and the next request so that the loop
                iterations of two requests never merge; then it closes.

Handshake with loop_app (its parent): once the cache server listens, the
feeder thread is opening the FIFO and the load connection is made, it
prints "aux cache=PORT" on stdout; it starts the load at a line on stdin.
Its own times are not part of the truth."""
import os
import queue
import socket
import sys
import threading
import time

CACHE_DELAY = 0.03
FIFO_DELAY = 0.04
PAUSE = 0.015


def cache_server(listener):
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while conn.recv(1):
        time.sleep(CACHE_DELAY)
        conn.sendall(b"v")


def fifo_feeder(path, due):
    fd = os.open(path, os.O_WRONLY)  # until loop_app opens its end
    while True:
        t = due.get()
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        os.write(fd, b"f")


def main():
    port, fifo, n, kinds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    threading.Thread(target=cache_server, args=(listener,), daemon=True).start()
    due = queue.SimpleQueue()
    threading.Thread(target=fifo_feeder, args=(fifo, due), daemon=True).start()
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("aux cache=%d" % listener.getsockname()[1], flush=True)
    sys.stdin.readline()
    for _ in range(n):
        for k in kinds:
            time.sleep(PAUSE)
            client.sendall(bytes([k]))
            if k == ord("f"):
                due.put(time.monotonic() + FIFO_DELAY)
            if client.recv(1) != b"k":
                sys.exit("loop_aux: bad or no reply to %r" % chr(k))
    client.close()


main()
