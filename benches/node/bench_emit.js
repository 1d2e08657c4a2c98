'use strict';
// Node emitter benchmarks (run by `make bench`): ratios against plain-Node baselines measured in
// the same run, on the same disk.
//   1. group mode: N emitTrialRecorded not awaited, then flush(), per event, vs JSON.stringify +
//      fs.writeSync per event + one fdatasync;
//   2. fsync mode: latency of one awaited emit, p50/p99, vs fs.writeSync + fs.fdatasyncSync;
//   3. event-loop lag (monitorEventLoopDelay) while emitting at 100k events/s in group mode, and
//      while emitting back to back in fsync mode.
// Usage: node benches/node/bench_emit.js [--events N] [--rounds R] [--json]

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance, monitorEventLoopDelay } = require('node:perf_hooks');
const lx = require(path.join(__dirname, '..', '..', 'node'));

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const N = opt('--events', 100000);
const ROUNDS = opt('--rounds', 3);
const FSYNC_N = opt('--fsync-events', 1000);
const base = fs.mkdtempSync(path.join(process.env.LEDGERX_BENCH_DIR || os.tmpdir(), 'ledgerx-node-bench-'));
let dirNo = 0;
const freshRoot = () => path.join(base, `r${dirNo++}`);

const params = (i) => ({ fast: 2 + (i % 18), slow: 30 + (i % 60), stop: 0.02 });
const metrics = (i) => ({ pnl: i / 7, sharpe: 1.25, max_drawdown: 0.125, trades: 42 });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};

async function groupRound() {
  const em = lx.getEventEmitter(freshRoot(), { durability: 'group' });
  await em.emitRunStarted('bench');
  const t0 = performance.now();
  const ps = new Array(N);
  for (let i = 0; i < N; i++) ps[i] = em.emitTrialRecorded('bench', i, params(i), metrics(i));
  await em.flush();
  const t1 = performance.now();
  await Promise.all(ps);
  const t2 = performance.now();
  await em.close();
  return { perEventUs: ((t1 - t0) * 1000) / N, allResolvedUs: ((t2 - t0) * 1000) / N };
}

function baselineRound() {
  const dir = freshRoot();
  fs.mkdirSync(dir, { recursive: true });
  const fd = fs.openSync(path.join(dir, 'plain.jsonl'), 'a');
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const ev = { event_type: 'trial.recorded', run_id: 'bench', seq: i + 1,
      data: { trial_id: i, params: params(i), metrics: metrics(i) } };
    fs.writeSync(fd, JSON.stringify(ev) + '\n');
  }
  fs.fdatasyncSync(fd);
  const t1 = performance.now();
  fs.closeSync(fd);
  return { perEventUs: ((t1 - t0) * 1000) / N };
}

/** fsync mode vs raw writeSync + fdatasyncSync, interleaved event by event so both see the same
 *  disk conditions (other processes' I/O on a shared VM comes and goes). */
async function fsyncLatencies() {
  const em = lx.getEventEmitter(freshRoot(), { durability: 'fsync' });
  await em.emitRunStarted('bench');
  const dir = freshRoot();
  fs.mkdirSync(dir, { recursive: true });
  const fd = fs.openSync(path.join(dir, 'plain.jsonl'), 'a');
  const ours = [];
  const raw = [];
  for (let i = 0; i < FSYNC_N; i++) {
    let t0 = performance.now();
    await em.emitTrialRecorded('bench', i, params(i), metrics(i));
    ours.push((performance.now() - t0) * 1000);
    t0 = performance.now();
    const ev = { event_type: 'trial.recorded', run_id: 'bench', seq: i + 1,
      data: { trial_id: i, params: params(i), metrics: metrics(i) } };
    fs.writeSync(fd, JSON.stringify(ev) + '\n');
    fs.fdatasyncSync(fd);
    raw.push((performance.now() - t0) * 1000);
  }
  fs.closeSync(fd);
  await em.close();
  return { ours, raw };
}

/** Emit `rate` events/s in 1 ms ticks for `ms`, measuring event-loop delay. */
async function lagWhileEmitting(durability, rate, ms) {
  const em = lx.getEventEmitter(freshRoot(), { durability });
  await em.emitRunStarted('bench');
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let i = 0;
  const pending = [];
  if (durability === 'group') {
    // A fixed offer per 1 ms tick (rate/1000 events): when the machine cannot keep up the
    // achieved rate drops (reported) instead of the ticks growing without bound.
    const perTick = Math.round(rate / 1000);
    const t0 = performance.now();
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        for (let k = 0; k < perTick; k++) pending.push(em.emitTrialRecorded('bench', i, params(i), metrics(i++)));
        if (performance.now() - t0 >= ms) {
          clearInterval(tick);
          resolve();
        }
      }, 1);
    });
  } else {
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      await Promise.all([0, 1, 2, 3].map(() => em.emitTrialRecorded('bench', i, params(i), metrics(i++))));
    }
  }
  await Promise.all(pending);
  h.disable();
  await em.close();
  // The histogram records the time between 1 ms timer ticks: the lag is that minus 1 ms.
  const lag = (ns) => Math.max(0, ns / 1e6 - 1);
  return { events: i, perSecond: Math.round(i / (ms / 1000)), p50Ms: lag(h.percentile(50)), p99Ms: lag(h.percentile(99)), maxMs: lag(h.max) };
}

async function main() {
  const group = [];
  const plain = [];
  for (let r = 0; r < ROUNDS; r++) {
    plain.push(baselineRound().perEventUs);
    group.push((await groupRound()).perEventUs);
  }
  const { ours: fsyncLat, raw: rawLat } = await fsyncLatencies();
  const lagGroup = await lagWhileEmitting('group', 100000, 2000);
  const lagFsync = await lagWhileEmitting('fsync', 0, 2000);
  const res = {
    events: N,
    rounds: ROUNDS,
    group_per_event_us: median(group),
    baseline_stringify_write_per_event_us: median(plain),
    group_ratio: median(group) / median(plain),
    fsync_p50_us: pct(fsyncLat, 0.5),
    fsync_p99_us: pct(fsyncLat, 0.99),
    raw_fsync_p50_us: pct(rawLat, 0.5),
    raw_fsync_p99_us: pct(rawLat, 0.99),
    fsync_p99_ratio: pct(fsyncLat, 0.99) / pct(rawLat, 0.99),
    lag_group_100k_per_s: lagGroup,
    lag_fsync: lagFsync,
  };
  fs.rmSync(base, { recursive: true, force: true });
  if (argv.includes('--json')) {
    console.log(JSON.stringify(res, null, 2));
    return;
  }
  const f = (x) => x.toFixed(2);
  console.log(`ledgerx Node emitter, ${N} events x ${ROUNDS} rounds (median), fsync ${FSYNC_N} events`);
  console.log(`  group: ${f(res.group_per_event_us)} us/event vs JSON.stringify+writeSync+1 fdatasync ${f(res.baseline_stringify_write_per_event_us)} us/event -> ratio ${f(res.group_ratio)} (target <= 1.0)`);
  console.log(`  fsync: p50 ${f(res.fsync_p50_us)} us, p99 ${f(res.fsync_p99_us)} us vs writeSync+fdatasyncSync p50 ${f(res.raw_fsync_p50_us)} us, p99 ${f(res.raw_fsync_p99_us)} us -> p99 ratio ${f(res.fsync_p99_ratio)} (target <= 1.2)`);
  console.log(`  event-loop lag, group offered 100k ev/s (achieved ${lagGroup.perSecond}/s): p50 ${f(lagGroup.p50Ms)} ms, p99 ${f(lagGroup.p99Ms)} ms (target < 1 ms)`);
  console.log(`  event-loop lag, fsync back to back (${lagFsync.events} events): p50 ${f(lagFsync.p50Ms)} ms, p99 ${f(lagFsync.p99Ms)} ms`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
