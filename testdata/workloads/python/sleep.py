"""blocker() sleeps in time.sleep(0.2), N times (argv[1], default 10),
called from main(): the profile must show blocker at the sleep's line."""
import sys
import threading
import time

import wl


def blocker(n):
    total = 0.0
    for _ in range(n):
        t0 = time.monotonic()
        time.sleep(0.2)  # BLOCK
        total += time.monotonic() - t0
    return total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    tid = threading.get_native_id()
    wl.ready(main=tid)
    wl.wait_go()
    seconds = blocker(n)
    wl.write_truth([wl.block("blocker", "clock_nanosleep", tid, n, seconds)])


main()
