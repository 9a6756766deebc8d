"""An asyncio program with the blocking mistakes an audit misses, N times
each (argv[1], default 20), one request after another on the loop thread:

  handle_request  time.sleep(0.05) inside an async def;
  get_cached      a synchronous socket round trip (sendall + recv) to a
                  local "cache" server thread that answers after 20 ms;
  offload         the right way: await asyncio.to_thread(blocking_io), where
                  blocking_io sleeps 30 ms on a worker thread, not the loop.

The profile must show the coroutine functions with their callers up to
the event loop's run method on the loop thread, the socket's peer address,
and blocking_io on a worker thread only."""
import asyncio
import socket
import sys
import threading
import time

import wl

sleep_total = 0.0
cache_total = 0.0
io_total = 0.0
io_tid = 0


async def handle_request(i):
    global sleep_total
    t0 = time.monotonic()
    time.sleep(0.05)  # BLOCK handle_request
    sleep_total += time.monotonic() - t0
    return i


async def get_cached(sock, i):
    global cache_total
    t0 = time.monotonic()
    sock.sendall(b"g")
    data = sock.recv(1)  # BLOCK get_cached
    cache_total += time.monotonic() - t0
    return data


def blocking_io():
    global io_total, io_tid
    io_tid = threading.get_native_id()
    t0 = time.monotonic()
    time.sleep(0.03)  # BLOCK blocking_io
    io_total += time.monotonic() - t0


async def offload():
    await asyncio.to_thread(blocking_io)


async def serve(n, sock):
    for i in range(n):
        await handle_request(i)
        await get_cached(sock, i)
        await offload()
        await asyncio.sleep(0)


def cache_server(listener):
    conn, _ = listener.accept()
    while conn.recv(1):
        time.sleep(0.02)
        conn.sendall(b"v")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    threading.Thread(target=cache_server, args=(listener,), daemon=True).start()
    sock = socket.create_connection(listener.getsockname())
    local, peer = sock.getsockname(), sock.getpeername()
    tid = threading.get_native_id()
    wl.ready(main=tid)
    wl.wait_go()
    asyncio.run(serve(n, sock))
    cache = wl.block("get_cached", "recvfrom", tid, n, cache_total)
    cache["target"] = "tcp %s:%d->%s:%d" % (local + peer)
    wl.write_truth([
        wl.block("handle_request", "clock_nanosleep", tid, n, sleep_total),
        cache,
        wl.block("blocking_io", "clock_nanosleep", io_tid, n, io_total),
    ])


main()
