"""Three threads blocking in three different functions: time.sleep,
Lock.acquire (futex) and socket recv, N times each (argv[1], default 8)."""
import socket
import sys
import threading
import time

import wl

N = int(sys.argv[1]) if len(sys.argv) > 1 else 8
go = threading.Event()
results = []


def sleep_worker():
    go.wait()
    total = 0.0
    for _ in range(N):
        t0 = time.monotonic()
        time.sleep(0.2)  # BLOCK sleep_worker
        total += time.monotonic() - t0
    results.append(wl.block("sleep_worker", "clock_nanosleep", threading.get_native_id(), N, total))


def lock_worker(lock):
    go.wait()
    total = 0.0
    for _ in range(N):
        t0 = time.monotonic()
        lock.acquire(timeout=0.2)  # BLOCK lock_worker
        total += time.monotonic() - t0
    results.append(wl.block("lock_worker", "futex", threading.get_native_id(), N, total))


def recv_worker(sock):
    go.wait()
    total = 0.0
    for _ in range(N):
        t0 = time.monotonic()
        sock.recv(1)  # BLOCK recv_worker
        total += time.monotonic() - t0
    results.append(wl.block("recv_worker", "recvfrom", threading.get_native_id(), N, total))


def feeder(sock):
    go.wait()
    for _ in range(N):
        time.sleep(0.2)
        sock.send(b"x")


def main():
    lock = threading.Lock()
    lock.acquire()  # held for good: lock_worker times out each time
    a, b = socket.socketpair()
    threads = [threading.Thread(target=sleep_worker), threading.Thread(target=lock_worker, args=(lock,)),
               threading.Thread(target=recv_worker, args=(a,)), threading.Thread(target=feeder, args=(b,))]
    for t in threads:
        t.start()
    time.sleep(0.1)
    wl.ready(**{t._target.__name__: t.native_id for t in threads})
    wl.wait_go()
    go.set()
    for t in threads:
        t.join()
    wl.write_truth(results)


main()
