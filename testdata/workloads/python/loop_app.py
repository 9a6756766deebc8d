"""An asyncio TCP server whose handlers stall its event loop, for the
event-loop stall tests.

  usage: python3 loop_app.py MODE N     (MODE all, idle or echo; N rounds)

The loop runs on the main thread; a server on 127.0.0.1:0 takes one-byte
requests and answers each with one byte once its handler is done. Modes:

  all   loop_aux.py, a child process (not a thread of this one), hosts a
        "cache" server, a FIFO feeder and the load: N rounds of one request
        of each kind, one at a time, 15 ms apart. Each kind has a handler:
          handle_sleep   time.sleep(0.05)                           stalls
          handle_cache   sendall + recv(1) on a blocking socket (no
                         timeout) to the cache server, which answers
                         after 30 ms                                stalls
          handle_fifo    os.read(fd, 1) of a FIFO (blocking fd, opened
                         before ready) that the feeder writes 40 ms
                         after the request                          stalls
          handle_cpu     burn_cpu(): pure Python until the thread's CPU
                         time advanced 0.2 s                        stalls
          handle_asleep  await asyncio.sleep(0.05): the loop waits, idle
          handle_thread  await asyncio.to_thread(blocking_io); blocking_io
                         sleeps 50 ms on the default executor's worker
                         thread, not on the loop
  idle  no requests and no child: a no-op timer (loop.call_later every
        20 ms) makes the loop iterate; runs N * 100 ms past "go".
  echo  an echo server (asyncio.Protocol) for a benchmark; no child, no
        load: the test drives it. Runs past "go" until SIGTERM or SIGINT,
        then writes its (empty) truth and exits 0.

Ready line: "ready loop=TID worker=TID aux=PID port=PORT" (all; worker is
the executor's thread, started before ready), "ready loop=TID port=PORT"
(idle, echo). Before "go" the loop waits for stdin in its own epoll_wait
(loop.add_reader), so it idles there and never blocks in a read of stdin.

Truth (all): blocks on the loop thread, measured with time.monotonic()
around exactly the blocking call, each count = N = the number of loop
stalls that handler caused: handle_sleep (clock_nanosleep), handle_cache
(recvfrom; target "tcp LOCAL->PEER" of the cache socket), handle_fifo
(read); handle_asleep (epoll_wait, kind "idle": N calls, no stall; the
seconds are around the await); blocking_io (clock_nanosleep) on the worker
thread's tid. cpu: burn_cpu on the loop thread, seconds = thread CPU time
(time.thread_time()), wall = monotonic time, count = N stalls. The extra
top-level "stalls" maps each handler to the number of loop stalls it
caused (0 for handle_asleep and handle_thread). idle and echo: no blocks,
no cpu, stalls {}; idle adds "ticks", the timer runs past "go"."""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import wl

SLEEP = 0.05
CPU = 0.2
ASLEEP = 0.05
IO_SLEEP = 0.05
TICK = 0.02

# Request kind (one byte) -> handler name, in the order the load sends them.
KINDS = [
    (b"s", "handle_sleep"),
    (b"c", "handle_cache"),
    (b"f", "handle_fifo"),
    (b"u", "handle_cpu"),
    (b"a", "handle_asleep"),
    (b"t", "handle_thread"),
]


class State:
    cache = None  # blocking socket to the cache server
    fifo_fd = -1
    loop_tid = 0
    worker_tid = 0
    blocks = {}  # (func, tid) -> [count, seconds]
    cpu = [0, 0.0, 0.0]  # burn_cpu: count, thread CPU seconds, wall seconds


S = State()


def record(func, tid, seconds):
    entry = S.blocks.setdefault((func, tid), [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


async def handle_sleep():
    t0 = time.monotonic()
    time.sleep(SLEEP)  # BLOCK handle_sleep
    record("handle_sleep", S.loop_tid, time.monotonic() - t0)


async def handle_cache():
    S.cache.sendall(b"g")
    t0 = time.monotonic()
    data = S.cache.recv(1)  # BLOCK handle_cache
    record("handle_cache", S.loop_tid, time.monotonic() - t0)
    if data != b"v":
        raise RuntimeError("cache server answered %r" % data)


async def handle_fifo():
    t0 = time.monotonic()
    data = os.read(S.fifo_fd, 1)  # BLOCK handle_fifo
    record("handle_fifo", S.loop_tid, time.monotonic() - t0)
    if data != b"f":
        raise RuntimeError("FIFO gave %r" % data)


def burn_cpu(seconds):
    c0, w0 = time.thread_time(), time.monotonic()
    x = 0
    while time.thread_time() - c0 < seconds:
        for i in range(20000):  # BUSY burn_cpu
            x = (x * 31 + i) % 1000003
    S.cpu[0] += 1
    S.cpu[1] += time.thread_time() - c0
    S.cpu[2] += time.monotonic() - w0
    return x


async def handle_cpu():
    burn_cpu(CPU)


async def handle_asleep():
    t0 = time.monotonic()
    await asyncio.sleep(ASLEEP)  # IDLE handle_asleep
    record("handle_asleep", S.loop_tid, time.monotonic() - t0)


def blocking_io():
    t0 = time.monotonic()
    time.sleep(IO_SLEEP)  # BLOCK blocking_io
    record("blocking_io", threading.get_native_id(), time.monotonic() - t0)


async def handle_thread():
    await asyncio.to_thread(blocking_io)


HANDLERS = {k: globals()[name] for k, name in KINDS}


async def wait_go():
    """Waits for the go line (or EOF) on stdin inside the loop's own wait."""
    loop = asyncio.get_running_loop()
    go = loop.create_future()

    def readable():
        data = os.read(0, 4096)
        if not data or b"\n" in data:
            loop.remove_reader(0)
            if not go.done():
                go.set_result(None)

    try:
        loop.add_reader(0, readable)
    except (PermissionError, ValueError):
        wl.wait_go()  # stdin is a file or /dev/null: no epoll for it
        return
    await go


async def run_all(n):
    loop = asyncio.get_running_loop()
    S.loop_tid = threading.get_native_id()
    connected = loop.create_future()
    done = loop.create_future()

    async def serve_client(reader, writer):
        if connected.done():
            writer.close()
            return
        connected.set_result(None)
        try:
            while True:
                kind = await reader.read(1)
                if not kind:
                    break
                await HANDLERS[kind]()
                writer.write(b"k")
                await writer.drain()
        except BaseException as e:
            done.set_exception(e)
            raise
        writer.close()
        done.set_result(None)

    server = await asyncio.start_server(serve_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="loop_app")
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    aux_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop_aux.py")
    kinds = b"".join(k for k, _ in KINDS).decode()
    aux = subprocess.Popen([sys.executable, aux_py, str(port), fifo, str(n), kinds],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # Set-up, before ready: blocking here is no part of the truth.
        line = aux.stdout.readline().decode()
        if not line.startswith("aux cache="):
            raise RuntimeError("loop_aux.py did not start: %r" % line)
        S.fifo_fd = os.open(fifo, os.O_RDONLY)  # until the feeder opens its end
        S.cache = socket.create_connection(("127.0.0.1", int(line.split("=")[1])))
        assert S.cache.gettimeout() is None  # blocking: a timeout would poll first
        await connected

        def note_worker():
            S.worker_tid = threading.get_native_id()

        await asyncio.to_thread(note_worker)  # the executor's thread, now
        wl.ready(loop=S.loop_tid, worker=S.worker_tid, aux=aux.pid, port=port)
        await wait_go()
        aux.stdin.write(b"go\n")
        aux.stdin.close()
        await done
        # The child exits at once; wait for it off the loop thread.
        await loop.run_in_executor(None, aux.wait)
        if aux.returncode != 0:
            raise RuntimeError("loop_aux.py exited %d" % aux.returncode)
    finally:
        if aux.poll() is None:
            aux.kill()
            aux.wait()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)

    local, peer = S.cache.getsockname(), S.cache.getpeername()
    blocks = []
    for (func, tid), (count, seconds) in S.blocks.items():
        b = wl.block(func, {"handle_fifo": "read", "handle_cache": "recvfrom",
                            "handle_asleep": "epoll_wait"}.get(func, "clock_nanosleep"),
                     tid, count, seconds)
        if func == "handle_cache":
            b["target"] = "tcp %s:%d->%s:%d" % (local + peer)
        if func == "handle_asleep":
            b["kind"] = "idle"
        blocks.append(b)
    count, cpu, wall = S.cpu
    stalls = {name: 0 if name in ("handle_asleep", "handle_thread") else n for _, name in KINDS}
    return {"blocks": blocks,
            "cpu": [{"func": "burn_cpu", "tid": S.loop_tid, "seconds": cpu, "wall": wall,
                     "count": count}],
            "stalls": stalls}


async def run_idle(n):
    loop = asyncio.get_running_loop()
    ticks = [0]

    def tick():
        ticks[0] += 1
        loop.call_later(TICK, tick)

    loop.call_later(TICK, tick)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wl.ready(loop=threading.get_native_id(), port=port)
    await wait_go()
    ticks[0] = 0
    await asyncio.sleep(n * 0.1)
    server.close()
    return {"blocks": [], "cpu": [], "stalls": {}, "ticks": ticks[0]}


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def run_echo(n):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wl.ready(loop=threading.get_native_id(), port=port)
    await wait_go()
    await stop
    server.close()
    return {"blocks": [], "cpu": [], "stalls": {}}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "all"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    runs = {"all": run_all, "idle": run_idle, "echo": run_echo}
    if mode not in runs or n <= 0:
        sys.exit("usage: loop_app.py all|idle|echo N")
    truth = asyncio.run(runs[mode](n))
    data = json.dumps(dict(pid=os.getpid(), **truth))
    path = os.environ.get("BLOCKPROF_TRUTH")
    if path:
        with open(path, "w") as f:
            f.write(data + "\n")
    else:
        print(data)


main()
