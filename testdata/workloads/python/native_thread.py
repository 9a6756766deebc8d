"""A thread with no Python thread state: created with pthread_create
straight onto libc's sleep(1), while the main thread waits for it in
pthread_join. The native thread must keep its native stack (no Python
frames); the main thread shows join_native."""
import ctypes
import os
import threading
import time

import wl


def tasks():
    return set(os.listdir("/proc/self/task"))


def join_native(libc, tid):
    libc.pthread_join(tid, None)  # BLOCK


def main():
    libc = ctypes.CDLL(None)
    libc.pthread_create.argtypes = [ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    libc.pthread_join.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    main_tid = threading.get_native_id()
    wl.ready(main=main_tid)
    wl.wait_go()
    before = tasks()
    tid = ctypes.c_ulong()
    t0 = time.monotonic()
    libc.pthread_create(ctypes.byref(tid), None, ctypes.cast(libc.sleep, ctypes.c_void_p), 1)
    new = tasks() - before
    join_native(libc, tid.value)
    seconds = time.monotonic() - t0
    blocks = [wl.block("join_native", "futex", main_tid, 1, seconds)]
    for t in new:
        blocks.append(wl.block("sleep", "clock_nanosleep", int(t), 1, seconds))
    wl.write_truth(blocks)


main()
