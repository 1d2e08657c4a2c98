'use strict';
// A fixed emit workload for instruction counts (valgrind --tool=callgrind): N emitTrialRecorded
// in group mode (or fsync mode, awaited one by one), then flush(); with `keep`, group mode keeps
// every Promise and awaits them all after the flush (as bench_emit.js's group rounds do).
// Usage: node benches/node/emit_workload.js ROOT [N] [group|fsync] [keep] [NODE_DIR]
const path = require('node:path');

const [root, n = '20000', mode = 'group', keep = '', dir = ''] = process.argv.slice(2);
const lx = require(dir ? path.resolve(dir) : path.join(__dirname, '..', '..', 'node'));
const N = Number(n);
const params = (i) => ({ fast: 2 + (i % 18), slow: 30 + (i % 60), stop: 0.02 });
const metrics = (i) => ({ pnl: i / 7, sharpe: 1.25, max_drawdown: 0.125, trades: 42 });

(async () => {
  const em = lx.getEventEmitter(root, { durability: mode });
  await em.emitRunStarted('bench');
  if (mode === 'fsync') {
    for (let i = 0; i < N; i++) await em.emitTrialRecorded('bench', i, params(i), metrics(i));
  } else if (keep === 'keep') {
    const ps = new Array(N);
    for (let i = 0; i < N; i++) ps[i] = em.emitTrialRecorded('bench', i, params(i), metrics(i));
    await em.flush();
    await Promise.all(ps);
  } else {
    for (let i = 0; i < N; i++) em.emitTrialRecorded('bench', i, params(i), metrics(i));
  }
  await em.flush();
  await em.close();
})();
