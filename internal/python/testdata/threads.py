# Three threads parked in known places, for the user-space walker test.
import sys
import threading
import time


class Worker:
    def wait_for_io(self):
        time.sleep(60)  # line 9

    def run(self):
        self.wait_for_io()


def lock_waiter(lock):
    lock.acquire()  # line 16


def main():
    lock = threading.Lock()
    lock.acquire()
    threading.Thread(target=Worker().run, daemon=True).start()
    threading.Thread(target=lock_waiter, args=(lock,), daemon=True).start()
    time.sleep(0.2)
    print("ready", flush=True)
    sys.stdin.readline()  # line 26


main()
