"""Two threads bounce a byte over two pipes for -d seconds (argv, default
2), each from a few Python calls deep: every round trip is two voluntary
switch-outs of a Python thread, the worst case for the frame walker.
Prints "ready", waits for "go", then "roundtrips_per_sec=N"."""
import os
import sys
import threading
import time

import wl


def bounce(rfd, wfd, stop, depth):
    if depth:
        return bounce(rfd, wfd, stop, depth - 1)
    n = 0
    while not stop.is_set():
        os.write(wfd, b"x")
        os.read(rfd, 1)
        n += 1
    return n


def echo(rfd, wfd, depth):
    if depth:
        return echo(rfd, wfd, depth - 1)
    while os.read(rfd, 1):
        os.write(wfd, b"x")


def main():
    seconds = float(sys.argv[sys.argv.index("-d") + 1]) if "-d" in sys.argv else 2.0
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    stop = threading.Event()
    t = threading.Thread(target=echo, args=(a_r, b_w, 8), daemon=True)
    t.start()
    wl.ready(echo=t.native_id)
    wl.wait_go()
    t0 = time.monotonic()
    threading.Timer(seconds, stop.set).start()
    n = bounce(b_r, a_w, stop, 8)
    print("roundtrips_per_sec=%.0f" % (n / (time.monotonic() - t0)), flush=True)
    os.close(a_w)
    wl.write_truth([])


main()
