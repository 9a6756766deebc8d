"""The Python workloads' side of the ready/go/truth protocol that
internal/testutil drives (the Go workloads use wl/wl.go, the C ones
include/workload.h): print "ready role=TID ...", wait for a line on stdin,
run, write the truth as JSON to $BLOCKPROF_TRUTH (stdout when unset).
Times are time.monotonic() around each blocking call, like the others'
CLOCK_MONOTONIC."""
import json
import os
import sys


def ready(**tids):
    print("ready " + " ".join("%s=%d" % kv for kv in tids.items()), flush=True)


def wait_go():
    sys.stdin.readline()


def block(func, syscall, tid, count, seconds):
    return {"func": func, "syscall": syscall, "tid": tid, "count": count, "seconds": seconds}


def write_truth(blocks):
    data = json.dumps({"pid": os.getpid(), "blocks": blocks, "cpu": []})
    path = os.environ.get("BLOCKPROF_TRUTH")
    if path:
        with open(path, "w") as f:
            f.write(data + "\n")
    else:
        print(data)
