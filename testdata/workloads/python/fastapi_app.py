"""A FastAPI service under uvicorn (asyncio loop, h11) whose handlers block
the event loop, for the first-screen culprit test.

  usage: python3 fastapi_app.py REDIS_PORT SECONDS
         python3 fastapi_app.py aux REQ_FIFO DATA_FIFO   (started by the app)

Needs Debian's python3-fastapi, python3-uvicorn and python3-redis, and a
redis-server on 127.0.0.1:REDIS_PORT. Everything stays on 127.0.0.1.

Handlers (GET), each blocking about 30 ms per request:
  /user      get_user       sync redis-py BLPOP on an empty list with a
                            30 ms timeout, on the loop              stalls
  /profile   get_profile    sync urllib.request.urlopen of the aux
                            process's HTTP upstream, which answers
                            after 30 ms                             stalls
  /feed      get_feed       sync os.read of a FIFO the aux process
                            writes 30 ms after it is asked          stalls
  /thread    get_user_thread  await asyncio.to_thread(lookup_in_thread):
                            the same sync BLPOP on a worker thread  no stall
  /async     get_user_async await redis.asyncio BLPOP             no stall

The aux process (this script in "aux" mode) is the HTTP upstream and the
FIFO feeder. The app prints "ready loop=TID port=PORT upstream=PORT"
once uvicorn listens on 127.0.0.1:PORT, waits for a line on stdin (in its
loop), serves for SECONDS, stops, and writes the truth: for each handler
the count and the seconds its blocking call took by its own clock
(time.monotonic() around exactly the call; for the good handlers around
the await), syscall recvfrom/recvfrom/read for the bad ones."""
import asyncio
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import wl

DELAY = 0.03


# ---- aux: HTTP upstream and FIFO feeder, in a process of their own ----


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        time.sleep(DELAY)
        body = b'{"name": "profile"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def feeder(req_path, data_path):
    req = os.open(req_path, os.O_RDONLY)  # the app opens the write end first
    data = os.open(data_path, os.O_WRONLY)
    while os.read(req, 1):
        time.sleep(DELAY)
        os.write(data, b"f")


def aux():
    req_path, data_path = sys.argv[2], sys.argv[3]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=feeder, args=(req_path, data_path), daemon=True).start()
    print("upstream=%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


# ---- the app ----

clock = {}  # handler -> [count, seconds]


def note(name, t0):
    c = clock.setdefault(name, [0, 0.0])
    c[0] += 1
    c[1] += time.monotonic() - t0


# The handlers are module-level functions, as in most services; their
# clients are set up by build_app.
R = R_THREAD = R_ASYNC = None
URL = ""
REQ_FD = DATA_FD = -1


async def get_user():
    t0 = time.monotonic()
    v = R.blpop("blockprof:user", timeout=DELAY)
    note("get_user", t0)
    return {"user": v}


async def get_profile():
    t0 = time.monotonic()
    with urllib.request.urlopen(URL) as resp:
        body = resp.read()
    note("get_profile", t0)
    return {"profile": body.decode()}


async def get_feed():
    os.write(REQ_FD, b"r")
    t0 = time.monotonic()
    b = os.read(DATA_FD, 1)
    note("get_feed", t0)
    return {"feed": b.decode()}


def lookup_in_thread():
    return R_THREAD.blpop("blockprof:thread", timeout=DELAY)


async def get_user_thread():
    t0 = time.monotonic()
    v = await asyncio.to_thread(lookup_in_thread)
    note("get_user_thread", t0)
    return {"user": v}


async def get_user_async():
    t0 = time.monotonic()
    v = await R_ASYNC.blpop("blockprof:async", timeout=DELAY)
    note("get_user_async", t0)
    return {"user": v}


def build_app(redis_port, upstream, req_fd, data_fd):
    global R, R_THREAD, R_ASYNC, URL, REQ_FD, DATA_FD
    import fastapi
    import redis
    import redis.asyncio

    R = redis.Redis(host="127.0.0.1", port=redis_port)
    R_THREAD = redis.Redis(host="127.0.0.1", port=redis_port)
    R_ASYNC = redis.asyncio.Redis(host="127.0.0.1", port=redis_port)
    URL = "http://127.0.0.1:%d/profile" % upstream
    REQ_FD, DATA_FD = req_fd, data_fd
    app = fastapi.FastAPI()
    for path, handler in (("/user", get_user), ("/profile", get_profile), ("/feed", get_feed),
                          ("/thread", get_user_thread), ("/async", get_user_async)):
        app.add_api_route(path, handler, methods=["GET"])
    return app


async def serve(app, seconds, upstream):
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop="asyncio", http="h11", lifespan="off", log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    # Warm up outside the measurement: the first thread, connections.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(lambda: None)
    go = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), go.set)
    wl.ready(loop=threading.get_native_id(), port=sock.getsockname()[1], upstream=upstream)
    await go.wait()
    loop.remove_reader(sys.stdin.fileno())
    sys.stdin.readline()
    clock.clear()
    await asyncio.sleep(seconds)
    server.should_exit = True
    await task


def main():
    if sys.argv[1] == "aux":
        aux()
        return
    redis_port, seconds = int(sys.argv[1]), float(sys.argv[2])
    d = tempfile.mkdtemp(prefix="fastapi_app")
    req_path, data_path = os.path.join(d, "req"), os.path.join(d, "feed")
    os.mkfifo(req_path)
    os.mkfifo(data_path)
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "aux", req_path, data_path],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        req_fd = os.open(req_path, os.O_WRONLY)
        data_fd = os.open(data_path, os.O_RDONLY)
        upstream = int(child.stdout.readline().split("=")[1])
        app = build_app(redis_port, upstream, req_fd, data_fd)
        asyncio.run(serve(app, seconds, upstream))
    finally:
        child.kill()
        child.wait()
        for p in (req_path, data_path):
            os.unlink(p)
        os.rmdir(d)
    tid = threading.get_native_id()
    syscalls = {"get_user": "recvfrom", "get_profile": "recvfrom", "get_feed": "read"}
    wl.write_truth([wl.block(name, syscalls.get(name, ""), tid, c[0], c[1]) for name, c in sorted(clock.items())])


main()
