'use strict';
// `make demo`'s Node worker: one sweep run written beside the Python workers, with the seed's
// API (group mode, every Promise awaited at the end). Usage: node demo_worker.js ROOT STAMP
const { getEventEmitter } = require('..');

async function main(root, stamp) {
  const emitter = getEventEmitter(root, { durability: 'group' });
  const runId = `demo-${stamp}-node`;
  const config = { strategy: 'ma_cross', lang: 'node', grid: { fast: [2, 20], slow: [30, 90] } };
  await emitter.emitRunCreated(runId, 'sweep', config, 'synthetic-node', { worker: 'node' });
  await emitter.emitRunStarted(runId);
  await emitter.emitPhaseStarted(runId, 'search', 0);
  const t0 = Date.now();
  const trials = [];
  let best = -Infinity;
  for (let t = 0; t < 40; t++) {
    const params = { fast: 2 + (t % 18), slow: 30 + ((t * 7) % 60) };
    const pnl = Math.round(Math.sin(t / 5) * 1e6) / 1e6;
    best = Math.max(best, pnl);
    trials.push(emitter.emitTrialRecorded(runId, t, params, { pnl, trades: t % 9 }));
  }
  await Promise.all(trials);
  await emitter.emitPhaseCompleted(runId, 'search', Date.now() - t0, { trials: trials.length });
  await emitter.emitRunCompleted(runId, { best_pnl: best }, []);
  await emitter.close();
  console.log(`demo: node worker wrote ${trials.length + 5} events (run ${runId})`);
}

main(process.argv[2], process.argv[3]).catch((e) => {
  console.error(`demo: node worker failed: ${e.name}: ${e.message}`);
  process.exit(1);
});
