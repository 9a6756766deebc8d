"""hung: a Python process stuck before any profiler arrives.

- lock_ab / lock_ba: two threads deadlocked on two threading.Lock objects
  (no owner is recorded in a Python lock);
- open_fifo: open() of a FIFO that no writer ever opens;
- sleep_long: time.sleep(3600) in the main thread.

Once all are blocked it prints one JSON line: each wait's function,
thread (native id), and CLOCK_MONOTONIC seconds read just before the
blocking call. The FIFO's directory is argv[1].
"""
import json
import os
import sys
import threading
import time

a, b = threading.Lock(), threading.Lock()
both = threading.Barrier(2)
since = {}
tids = {}


def lock_ab():
    tids["lock_ab"] = threading.get_native_id()
    with a:
        both.wait()
        since["lock_ab"] = time.monotonic()
        b.acquire()


def lock_ba():
    tids["lock_ba"] = threading.get_native_id()
    with b:
        both.wait()
        since["lock_ba"] = time.monotonic()
        a.acquire()


def open_fifo(path):
    tids["open_fifo"] = threading.get_native_id()
    since["open_fifo"] = time.monotonic()
    open(path, "rb")


def sleep_long():
    since["sleep_long"] = time.monotonic()
    time.sleep(3600)


def main():
    fifo = os.path.join(sys.argv[1], "fifo")
    os.mkfifo(fifo)
    for fn, args in ((lock_ab, ()), (lock_ba, ()), (open_fifo, (fifo,))):
        threading.Thread(target=fn, args=args, daemon=True).start()
    while len(since) < 3:
        time.sleep(0.001)
    tids["sleep_long"] = threading.get_native_id()
    syscalls = {"lock_ab": "futex", "lock_ba": "futex", "open_fifo": "openat", "sleep_long": "clock_nanosleep"}

    def report():
        time.sleep(0.2)
        waits = [{"func": f, "tid": tids[f], "since": since[f], "syscall": syscalls[f]} for f in syscalls]
        print(json.dumps({"pid": os.getpid(), "waits": waits}), flush=True)

    # The report comes from a helper thread once the main thread sleeps.
    threading.Thread(target=report, daemon=True).start()
    sleep_long()


if __name__ == "__main__":
    main()
