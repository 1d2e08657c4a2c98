'use strict';
// Two builds of the Node package side by side in one process (an A/B on a loaded machine, where
// runs in separate processes mostly measure the other processes):
//   group mode: main-thread CPU (schedstat) and wall per event, rounds of N emitTrialRecorded +
//     flush() alternated between the builds, beside the plain JSON.stringify + writeSync round;
//   fsync mode: one awaited emit per build and one raw writeSync + fdatasyncSync, interleaved
//     event by event; p50/p90/p99 and the p99 ratios to raw.
// Usage: node benches/node/ab_addons.js OLD_NODE_DIR NEW_NODE_DIR [--rounds R] [--fsync-events N]
// (each dir holds index.js and the addon, e.g. a copy of node/ made from an older commit).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : dflt);
const builds = { old: require(path.resolve(argv[0])), new: require(path.resolve(argv[1])) };
const N = 100000;
const ROUNDS = opt('--rounds', 5);
const FSYNC_N = opt('--fsync-events', 1000);
const dir = fs.mkdtempSync(path.join(process.env.LEDGERX_BENCH_DIR || os.tmpdir(), 'ledgerx-ab-'));
let k = 0;
const STAT = `/proc/self/task/${process.pid}/schedstat`;
const cpu = () => Number(fs.readFileSync(STAT, 'utf8').split(' ')[0]);
const params = (i) => ({ fast: 2 + (i % 18), slow: 30 + (i % 60), stop: 0.02 });
const metrics = (i) => ({ pnl: i / 7, sharpe: 1.25, max_drawdown: 0.125, trades: 42 });
const plainLine = (i) => JSON.stringify({ event_type: 'trial.recorded', run_id: 'bench', seq: i + 1,
  data: { trial_id: i, params: params(i), metrics: metrics(i) } }) + '\n';
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function groupRound(lx) {
  const em = lx.getEventEmitter(path.join(dir, `r${k++}`), { durability: 'group' });
  await em.emitRunStarted('bench');
  const c0 = cpu();
  const t0 = performance.now();
  const ps = new Array(N);
  for (let i = 0; i < N; i++) ps[i] = em.emitTrialRecorded('bench', i, params(i), metrics(i));
  await em.flush();
  const r = { wall: ((performance.now() - t0) * 1000) / N, cpu: (cpu() - c0) / 1000 / N };
  await Promise.all(ps);
  await em.close();
  return r;
}

function plainRound() {
  const d = path.join(dir, `p${k++}`);
  fs.mkdirSync(d);
  const fd = fs.openSync(path.join(d, 'plain.jsonl'), 'a');
  const c0 = cpu();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) fs.writeSync(fd, plainLine(i));
  fs.fdatasyncSync(fd);
  const r = { wall: ((performance.now() - t0) * 1000) / N, cpu: (cpu() - c0) / 1000 / N };
  fs.closeSync(fd);
  return r;
}

async function fsyncInterleaved() {
  const ems = {};
  for (const v of ['old', 'new']) {
    ems[v] = builds[v].getEventEmitter(path.join(dir, `f-${v}`), { durability: 'fsync' });
    await ems[v].emitRunStarted('bench');
  }
  fs.mkdirSync(path.join(dir, 'raw'));
  const fd = fs.openSync(path.join(dir, 'raw', 'plain.jsonl'), 'a');
  const lat = { old: [], new: [], raw: [] };
  for (let i = 0; i < FSYNC_N; i++) {
    for (const v of i % 2 ? ['old', 'new', 'raw'] : ['new', 'old', 'raw']) {
      const t0 = performance.now();
      if (v === 'raw') {
        fs.writeSync(fd, plainLine(i));
        fs.fdatasyncSync(fd);
      } else {
        await ems[v].emitTrialRecorded('bench', i, params(i), metrics(i));
      }
      lat[v].push((performance.now() - t0) * 1000);
    }
  }
  fs.closeSync(fd);
  await ems.old.close();
  await ems.new.close();
  return lat;
}

(async () => {
  const g = { old: [], new: [], plain: [] };
  for (let r = 0; r < ROUNDS; r++) {
    g.plain.push(plainRound());
    for (const v of r % 2 ? ['new', 'old'] : ['old', 'new']) g[v].push(await groupRound(builds[v]));
  }
  const m = (v, f) => med(g[v].map((x) => x[f]));
  const f2 = (x) => x.toFixed(2);
  console.log(`group, median of ${ROUNDS} rounds of ${N}: main-thread CPU us/event old ${f2(m('old', 'cpu'))} new ${f2(m('new', 'cpu'))} plain ${f2(m('plain', 'cpu'))} (ratio old ${f2(m('old', 'cpu') / m('plain', 'cpu'))} new ${f2(m('new', 'cpu') / m('plain', 'cpu'))}); wall old ${f2(m('old', 'wall'))} new ${f2(m('new', 'wall'))} plain ${f2(m('plain', 'wall'))}`);
  const lat = await fsyncInterleaved();
  const q = (xs) => `p50 ${pct(xs, 0.5).toFixed(0)} p90 ${pct(xs, 0.9).toFixed(0)} p99 ${pct(xs, 0.99).toFixed(0)} us`;
  const r99 = (v) => f2(pct(lat[v], 0.99) / pct(lat.raw, 0.99));
  console.log(`fsync, ${FSYNC_N} awaited emits interleaved: old ${q(lat.old)}; new ${q(lat.new)}; raw ${q(lat.raw)}; p99 ratio old ${r99('old')} new ${r99('new')}`);
  fs.rmSync(dir, { recursive: true, force: true });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
