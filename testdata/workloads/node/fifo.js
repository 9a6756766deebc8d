// Node workload: blockingRead() reads one byte of a FIFO with fs.readSync,
// N times (argv: FIFO path, N): each read blocks the event loop's thread
// until the test's writer writes. (The FIFO is opened once, before the
// measured phase: glibc's open path has no frame pointers, so a stack
// blocked in open ends at libc.) Follows the ready/go/truth
// protocol of internal/testutil. Run with --perf-basic-prof so the JIT
// writes /tmp/perf-PID.map, and --interpreted-frames-native-stack so
// interpreted functions get their own entries.
'use strict';
const fs = require('fs');

function blockingRead(fd) {
  return fs.readSync(fd, Buffer.alloc(1)); // BLOCK
}

function handle(fd, n) {
  let total = 0n;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    blockingRead(fd);
    total += process.hrtime.bigint() - t0;
  }
  return Number(total) / 1e9;
}

function main() {
  const [path, n] = [process.argv[2], Number(process.argv[3] || 5)];
  const fd = fs.openSync(path, 'r'); // until the writer opens its end
  process.stdout.write(`ready main=${process.pid}\n`);
  fs.readSync(0, Buffer.alloc(16)); // wait for "go"
  const seconds = handle(fd, n);
  const truth = JSON.stringify({pid: process.pid, blocks: [{func: 'blockingRead', syscall: 'read', tid: process.pid, count: n, seconds}], cpu: []});
  fs.writeFileSync(process.env.BLOCKPROF_TRUTH || '/dev/stdout', truth + '\n');
}

main();
