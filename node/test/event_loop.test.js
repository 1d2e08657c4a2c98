'use strict';
// fsync mode never blocks the event loop: every fdatasync is slowed to 25 ms with strace fault
// injection; a 1 ms timer keeps ticking (lag p99 well under 25 ms: the fdatasyncs run on the
// libuv pool), and every Promise resolves only after its event's fdatasync (>= 25 ms).

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { tmpRoot, checkLog, REPO } = require('./helpers');

const DELAY_MS = 25;

const SCRIPT = `
const lx = require(${JSON.stringify(path.join(REPO, 'node'))});
const { performance } = require('node:perf_hooks');
const em = lx.getEventEmitter(process.argv[1], { durability: 'fsync' });
const lags = [];
let last = performance.now();
const timer = setInterval(() => {
  const now = performance.now();
  lags.push(now - last - 1);
  last = now;
}, 1);
const waits = [];
(async () => {
  await new Promise((r) => setTimeout(r, 50));
  for (let k = 0; k < 30; k++) {
    const batch = [];
    for (let j = 0; j < 4; j++) {
      const t0 = performance.now();
      batch.push(em.emitTrialRecorded('lag', k * 4 + j, {}, { x: j }).then(() => waits.push(performance.now() - t0)));
    }
    await Promise.all(batch);
  }
  clearInterval(timer);
  await em.close();
  lags.sort((a, b) => a - b);
  waits.sort((a, b) => a - b);
  console.log(JSON.stringify({
    ticks: lags.length,
    p99: lags[Math.floor(lags.length * 0.99)],
    minWait: waits[0],
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
  assert.equal(res.events, 120);
  assert.ok(res.ticks > 100, `timer ticked ${res.ticks} times`);
  // Generous bound (shared 2-core machines): an fdatasync on the loop would add >= 25 ms.
  assert.ok(res.p99 < 15, `timer lag p99 ${res.p99.toFixed(2)} ms while fdatasync takes ${DELAY_MS} ms`);
  assert.ok(res.minWait >= DELAY_MS - 1, `a Promise resolved ${res.minWait.toFixed(2)} ms after emit, before its fdatasync`);
  assert.equal(checkLog(root).length, 120);
});
