"""An asyncio program whose async handler makes a blocking call
(time.sleep(0.05)) N times (argv[1], default 20): the profile must show
handle_request with its callers up to the event loop's run method."""
import asyncio
import sys
import threading
import time

import wl

total = 0.0


async def handle_request(i):
    global total
    t0 = time.monotonic()
    time.sleep(0.05)  # BLOCK
    total += time.monotonic() - t0
    return i


async def serve(n):
    for i in range(n):
        await handle_request(i)
        await asyncio.sleep(0)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    tid = threading.get_native_id()
    wl.ready(main=tid)
    wl.wait_go()
    asyncio.run(serve(n))
    wl.write_truth([wl.block("handle_request", "clock_nanosleep", tid, n, total)])


main()
