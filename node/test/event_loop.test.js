'use strict';
// fsync mode never blocks the event loop. Every fdatasync is slowed to 25 ms with strace fault
// injection while a 1 ms timer ticks. The script alternates idle and emitting stretches of 60 ms
// (4 awaited emits at a time) in one process and labels each tick: "emitting" when an emit was
// called or a Promise was pending since the previous tick, "idle" otherwise.
// The process's own share of a tick's lag is the lag less the time its main thread waited for a
// CPU on the run queue (its schedstat): what the loaded machine took from it. Stalls that hit
// idle ticks as much (a late timer wake-up on the VM, the disk busy with other processes'
// fsyncs) are taken out by comparing with the idle ticks of the same run: the emitter's own
// contribution, p99 of the own lag while emitting minus p99 while idle, must stay under the
// issue's 5 ms. An fdatasync on the event loop adds >= 25 ms to every emitting tick. Every
// Promise resolves only after its event's fdatasync (>= 25 ms after the call).

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { tmpRoot, checkLog, REPO } = require('./helpers');

const DELAY_MS = 25;
const ROUNDS = 30;

const SCRIPT = `
const lx = require(${JSON.stringify(path.join(REPO, 'node'))});
const { performance } = require('node:perf_hooks');
const fs = require('node:fs');
// ms this thread has waited on the run queue (second field of its schedstat, in ns)
const STAT = '/proc/self/task/' + process.pid + '/schedstat';
const queued = () => Number(fs.readFileSync(STAT, 'utf8').split(' ')[1]) / 1e6;
const em = lx.getEventEmitter(process.argv[1], { durability: 'fsync' });
const idle = [];
const busy = [];
const idleOwn = [];
const busyOwn = [];
let calls = 0;      // emit calls since the previous tick
let pending = 0;    // Promises not settled yet
let pendingAtLast = 0;
let last = performance.now();
let lastQueued = queued();
const timer = setInterval(() => {
  const now = performance.now();
  const q = queued();
  const emitting = calls > 0 || pending > 0 || pendingAtLast > 0;
  const lag = now - last - 1;
  (emitting ? busy : idle).push(lag);
  (emitting ? busyOwn : idleOwn).push(Math.max(0, lag - (q - lastQueued)));
  calls = 0;
  pendingAtLast = pending;
  last = now;
  lastQueued = q;
}, 1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const waits = [];
let n = 0;
(async () => {
  await sleep(50);
  for (let round = 0; round < ${ROUNDS}; round++) {
    await sleep(60);
    const t0 = performance.now();
    while (performance.now() - t0 < 60) {
      const batch = [];
      for (let j = 0; j < 4; j++) {
        const t = performance.now();
        calls++;
        pending++;
        batch.push(em.emitTrialRecorded('lag', n++, {}, { x: j }).then(() => {
          pending--;
          waits.push(performance.now() - t);
        }));
      }
      await Promise.all(batch);
    }
  }
  await sleep(20);
  clearInterval(timer);
  await em.close();
  const p99 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)];
  console.log(JSON.stringify({
    idleTicks: idle.length,
    busyTicks: busy.length,
    idleP99: p99(idle),
    busyP99: p99(busy),
    idleOwnP99: p99(idleOwn),
    busyOwnP99: p99(busyOwn),
    minWait: Math.min(...waits),
    events: waits.length,
  }));
})();
`;

test('fsync mode: a slow fdatasync does not block the event loop; Promises wait for it', () => {
  const root = tmpRoot('lag');
  const r = spawnSync('strace', [
    '-f', '-qq', '--seccomp-bpf', '-o', '/dev/null',
    '-e', 'trace=fdatasync', '-e', `inject=fdatasync:delay_exit=${DELAY_MS * 1000}`,
    process.execPath, '-e', SCRIPT, '--', root,
  ], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').pop());
  console.log(JSON.stringify(res));
  const own = res.busyOwnP99 - res.idleOwnP99;
  assert.ok(
    own < 5,
    `the emitter adds ${own.toFixed(2)} ms to the timer's lag p99 (less run-queue waits: ` +
      `${res.busyOwnP99.toFixed(2)} ms emitting, ${res.idleOwnP99.toFixed(2)} ms idle; raw ` +
      `${res.busyP99.toFixed(2)} / ${res.idleP99.toFixed(2)} ms) while each fdatasync takes ${DELAY_MS} ms`,
  );
  // Each emitting stretch runs at least one batch of 4 (two on a quiet machine: 60 ms, 25 ms per
  // fdatasync; a loaded one may stretch a batch past 60 ms). The ticks below are what the lag
  // figures need.
  assert.ok(res.events >= ROUNDS * 4, `${res.events} events`);
  assert.ok(res.idleTicks > 200 && res.busyTicks > 200, `ticks: ${res.idleTicks} idle, ${res.busyTicks} emitting`);
  assert.ok(res.minWait >= DELAY_MS - 1, `a Promise resolved ${res.minWait.toFixed(2)} ms after emit, before its fdatasync`);
  assert.equal(checkLog(root).length, res.events);
});
