// Node workload for the event-loop stall tests: a timer handler that stalls
// the event loop on its main thread, in three named functions, N times.
//
//   usage: node --perf-basic-prof --interpreted-frames-native-stack \
//              loop.js FIFO_PATH N
//
// A setInterval handler, tick(), runs every INTERVAL_MS and calls:
//   readFifo   fs.readFileSync(FIFO_PATH): open, then read to EOF; a feeder
//              child process (sh) holds the FIFO's write end open for 40 ms
//              after each open before it writes one byte and closes, so
//              the read blocks ~40 ms. (The feeder then pauses 20 ms before
//              it opens again: a writer that reopened at once could do so
//              before the reader saw EOF, and the read would go on.);
//   busyLoop   20 ms of busy looping on the CPU;
//   runSleep   child_process.execSync('sleep 0.05'): blocks until the
//              child exits, in the wait of execSync's own private loop.
// Each tick is one stall of the loop: N stalls. A tick takes ~115 ms, more
// than the interval, so the ticks follow each other at once, but each in
// its own loop iteration (libuv polls once, with timeout 0, between two).
// After the N-th the loop waits once more (50 ms), then the truth is
// written and the process exits.
//
// FIFO_PATH is made with mkfifo if it does not exist. Before "ready" each
// function runs once (warm-up, not in the truth; the FIFO read also shows
// the feeder is up); then the loop waits for "go" on stdin (a libuv read of
// the stdin pipe, so the loop idles in its epoll wait, not in a read).
// Ready line: "ready loop=TID feeder=PID" (the loop is the main thread:
// TID = PID). --perf-basic-prof writes /tmp/perf-PID.map, and V8's log
// into the current directory unless --logfile is given.
//
// Truth, times from process.hrtime.bigint() around each call:
//   blocks: readFifo (syscall "read"), runSleep (syscall "epoll_pwait", the
//           wait of execSync's loop on its own epoll fd), tid = loop, count
//           N, seconds;
//   cpu:    busyLoop, tid = loop, count N, wall = its wall time, seconds =
//           the loop thread's own CPU time (the scheduler's sum_exec_runtime
//           from /proc/thread-self/schedstat: Node 20 has no per-thread CPU
//           clock, and process.cpuUsage() also counts V8's helper threads);
//   stalls: {"tick": N}: the loop iterations the handler stalled;
//   fifo_bytes: bytes readFifo got in all (N, unless a read missed EOF).
'use strict';
const fs = require('fs');
const cp = require('child_process');

const INTERVAL_MS = 100;
const BUSY_MS = 20;

function readFifo(path) {
  return fs.readFileSync(path); // BLOCK readFifo
}

function busyLoop(ms) {
  const end = process.hrtime.bigint() + BigInt(ms) * 1000000n;
  let x = 0;
  while (process.hrtime.bigint() < end) {
    x = (x * 31 + 7) % 1000003; // BUSY busyLoop
  }
  return x;
}

function runSleep() {
  cp.execSync('sleep 0.05'); // BLOCK runSleep
}

const st = {
  fifo: '', n: 0, ticks: 0, timer: null, feeder: null,
  fifoNs: 0n, fifoBytes: 0, sleepNs: 0n, busyNs: 0n, busyCpuNs: 0n,
};

// The calling thread's CPU time in ns so far (sum_exec_runtime).
function threadCPUNs() {
  return BigInt(fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]);
}

function tick() {
  let t0 = process.hrtime.bigint();
  const data = readFifo(st.fifo);
  st.fifoNs += process.hrtime.bigint() - t0;
  st.fifoBytes += data.length; // 1 a read, unless the reader was late for EOF

  const c0 = threadCPUNs();
  t0 = process.hrtime.bigint();
  busyLoop(BUSY_MS);
  st.busyNs += process.hrtime.bigint() - t0;
  st.busyCpuNs += threadCPUNs() - c0;

  t0 = process.hrtime.bigint();
  runSleep();
  st.sleepNs += process.hrtime.bigint() - t0;

  if (++st.ticks === st.n) {
    clearInterval(st.timer);
    setTimeout(finish, 50);
  }
}

function finish() {
  const tid = process.pid;
  const sec = (ns) => Number(ns) / 1e9;
  const truth = {
    pid: process.pid,
    blocks: [
      {func: 'readFifo', syscall: 'read', tid, count: st.n, seconds: sec(st.fifoNs)},
      {func: 'runSleep', syscall: 'epoll_pwait', tid, count: st.n, seconds: sec(st.sleepNs)},
    ],
    cpu: [
      {func: 'busyLoop', tid, seconds: sec(st.busyCpuNs), wall: sec(st.busyNs), count: st.n},
    ],
    stalls: {tick: st.n},
    fifo_bytes: st.fifoBytes,
  };
  st.feeder.kill('SIGKILL');
  fs.writeFileSync(process.env.BLOCKPROF_TRUTH || '/dev/stdout', JSON.stringify(truth) + '\n');
  process.exit(0);
}

// Calls go() at the first line or EOF on stdin, read by the loop.
function waitGo(go) {
  let buf = '';
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    process.stdin.pause();
    go();
  };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    if (buf.includes('\n')) start();
  });
  process.stdin.on('end', start);
}

function main() {
  st.fifo = process.argv[2];
  st.n = Number(process.argv[3] || 5);
  if (!st.fifo || !(st.n > 0)) {
    process.stderr.write('usage: loop.js FIFO_PATH N\n');
    process.exit(2);
  }
  if (!fs.existsSync(st.fifo)) {
    cp.execFileSync('mkfifo', [st.fifo]);
  }
  // The feeder: open (until a reader opens), 40 ms, one byte, close, 20 ms
  // for the reader to see EOF and close its end; again.
  const feed = 'while :; do { sleep 0.04; printf x; } > "$1"; sleep 0.02; done';
  st.feeder = cp.spawn('sh', ['-c', feed, 'feeder', st.fifo],
      {stdio: 'ignore'});
  st.feeder.on('exit', (code, sig) => {
    if (sig !== 'SIGKILL') {
      process.stderr.write(`feeder exited: ${code} ${sig}\n`);
      process.exit(1);
    }
  });
  setImmediate(() => {
    // Warm-up, before ready: not in the truth.
    if (readFifo(st.fifo).length === 0) {
      throw new Error('FIFO warm-up read: EOF');
    }
    busyLoop(1);
    runSleep();
    process.stdout.write(`ready loop=${process.pid} feeder=${st.feeder.pid}\n`);
    waitGo(() => {
      st.timer = setInterval(tick, INTERVAL_MS);
    });
  });
}

main();
