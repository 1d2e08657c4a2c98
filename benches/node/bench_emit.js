'use strict';
// Node emitter benchmarks (run by `make bench`): ratios against plain-Node baselines measured in
// the same run, on the same disk.
//   1. group mode: N emitTrialRecorded not awaited, then flush(), per event, vs JSON.stringify +
//      fs.writeSync per event + one fdatasync, the two interleaved round by round; wall time (the
//      issue's figure) and the main thread's CPU time (its schedstat: steadier on a loaded
//      machine, where wall time mostly measures the other processes);
//   2. fsync mode: latency of one awaited emit, p50/p99, vs fs.writeSync + fs.fdatasyncSync;
//   3. event-loop lag (monitorEventLoopDelay) while emitting at 100k events/s in group mode
//      (issued in slices of at most 10 events, each loop turn emitting what the rate allows so
//      far), beside the lag of the same timer with nothing to do, measured in the same process
//      right before; and while emitting back to back in fsync mode. Each lag also less the
//      main thread's run-queue wait (a second 1 ms timer and its schedstat): the process's own
//      share, apart from what a loaded machine takes from it. Also shown: the group round's
//      flush() wait after its last emit (the flusher's backlog, part of the per-event figure) and
//      the garbage collections during the group lag stretch (count, total pause).
// Usage: node benches/node/bench_emit.js [--events N] [--rounds R] [--json] [--pkg DIR]
// (--pkg: the package directory to load, e.g. a copy of node/ from another build, for runs of
// two builds taking turns; default this tree's node/)

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance, monitorEventLoopDelay, PerformanceObserver } = require('node:perf_hooks');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const pkg = argv.includes('--pkg') ? path.resolve(argv[argv.indexOf('--pkg') + 1]) : null;
const lx = require(pkg || path.join(__dirname, '..', '..', 'node'));
const N = opt('--events', 100000);
const ROUNDS = opt('--rounds', 5);
const FSYNC_N = opt('--fsync-events', 3000);
const base = fs.mkdtempSync(path.join(process.env.LEDGERX_BENCH_DIR || os.tmpdir(), 'ledgerx-node-bench-'));
let dirNo = 0;
const freshRoot = () => path.join(base, `r${dirNo++}`);

const params = (i) => ({ fast: 2 + (i % 18), slow: 30 + (i % 60), stop: 0.02 });
const metrics = (i) => ({ pnl: i / 7, sharpe: 1.25, max_drawdown: 0.125, trades: 42 });
// ns this thread has run (first field of its schedstat; Linux).
const STAT = `/proc/self/task/${process.pid}/schedstat`;
const cpuNs = () => (fs.existsSync(STAT) ? Number(fs.readFileSync(STAT, 'utf8').split(' ')[0]) : NaN);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};

async function groupRound() {
  const em = lx.getEventEmitter(freshRoot(), { durability: 'group' });
  await em.emitRunStarted('bench');
  const c0 = cpuNs();
  const t0 = performance.now();
  const ps = new Array(N);
  for (let i = 0; i < N; i++) ps[i] = em.emitTrialRecorded('bench', i, params(i), metrics(i));
  const tLoop = performance.now();
  await em.flush();
  const t1 = performance.now();
  const c1 = cpuNs();
  await Promise.all(ps);
  const t2 = performance.now();
  await em.close();
  return { perEventUs: ((t1 - t0) * 1000) / N, cpuUs: (c1 - c0) / 1000 / N, allResolvedUs: ((t2 - t0) * 1000) / N,
    flushWaitMs: t1 - tLoop };
}

function baselineRound() {
  const dir = freshRoot();
  fs.mkdirSync(dir, { recursive: true });
  const fd = fs.openSync(path.join(dir, 'plain.jsonl'), 'a');
  const c0 = cpuNs();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const ev = { event_type: 'trial.recorded', run_id: 'bench', seq: i + 1,
      data: { trial_id: i, params: params(i), metrics: metrics(i) } };
    fs.writeSync(fd, JSON.stringify(ev) + '\n');
  }
  fs.fdatasyncSync(fd);
  const t1 = performance.now();
  const c1 = cpuNs();
  fs.closeSync(fd);
  return { perEventUs: ((t1 - t0) * 1000) / N, cpuUs: (c1 - c0) / 1000 / N };
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

// ms this thread has waited for a CPU on the run queue (second field of its schedstat).
const queuedMs = () => (fs.existsSync(STAT) ? Number(fs.readFileSync(STAT, 'utf8').split(' ')[1]) / 1e6 : NaN);

/** A 1 ms timer whose lag is also taken less the main thread's run-queue wait over the tick:
 *  the process's own share of the lag, apart from what a loaded machine takes from it. */
function ownLagSampler() {
  const own = [];
  let last = performance.now();
  let lastQ = queuedMs();
  const t = setInterval(() => {
    const now = performance.now();
    const q = queuedMs();
    own.push(Math.max(0, now - last - 1 - (q - lastQ)));
    last = now;
    lastQ = q;
  }, 1);
  return () => {
    clearInterval(t);
    own.sort((a, b) => a - b);
    return own.length ? own[Math.floor(own.length * 0.99)] : NaN;
  };
}

// Garbage collections (count, total pause) while a lag stretch runs: the lag p99 follows them.
const gcLog = { n: 0, ms: 0, max: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcLog.n += 1;
    gcLog.ms += e.duration;
    gcLog.max = Math.max(gcLog.max, e.duration);
  }
}).observe({ entryTypes: ['gc'] });
const gcSince = (g0) => ({ gcs: gcLog.n - g0.n, gcMs: gcLog.ms - g0.ms });

/** The 1 ms timer's lag over `ms` with nothing else to do (this process, this moment). */
async function idleLag(ms) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const own = ownLagSampler();
  await new Promise((r) => setTimeout(r, ms));
  const ownP99Ms = own();
  h.disable();
  return { ...lagOf(h), ownP99Ms };
}

// The histogram records the time between 1 ms timer ticks: the lag is that minus 1 ms.
const lagOf = (h) => {
  const lag = (ns) => Math.max(0, ns / 1e6 - 1);
  return { p50Ms: lag(h.percentile(50)), p99Ms: lag(h.percentile(99)), maxMs: lag(h.max) };
};

/** Emit `rate` events/s for `ms` (group mode), or back to back 4 at a time (fsync mode),
 *  measuring the event-loop delay. Group mode issues the events in slices of at most 10, one
 *  slice per loop turn (setImmediate), each emitting what the rate allows so far: a backtest
 *  loop that yields to the event loop. Promises are not kept (nobody awaits them); flush() at
 *  the end. */
async function lagWhileEmitting(durability, rate, ms) {
  const em = lx.getEventEmitter(freshRoot(), { durability });
  await em.emitRunStarted('bench');
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const own = ownLagSampler();
  const g0 = { ...gcLog };
  let i = 0;
  if (durability === 'group') {
    const SLICE = 10;
    const t0 = performance.now();
    await new Promise((resolve) => {
      const turn = () => {
        const now = performance.now();
        if (now - t0 >= ms) {
          resolve();
          return;
        }
        const due = Math.min(i + SLICE, Math.floor(((now - t0) * rate) / 1000));
        while (i < due) em.emitTrialRecorded('bench', i, params(i), metrics(i++));
        setImmediate(turn);
      };
      setImmediate(turn);
    });
    await em.flush();
  } else {
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      await Promise.all([0, 1, 2, 3].map(() => em.emitTrialRecorded('bench', i, params(i), metrics(i++))));
    }
  }
  const ownP99Ms = own();
  h.disable();
  const gc = gcSince(g0);
  await em.close();
  return { events: i, perSecond: Math.round(i / (ms / 1000)), ...lagOf(h), ownP99Ms, ...gc };
}

async function main() {
  const group = [];
  const plain = [];
  for (let r = 0; r < ROUNDS; r++) {
    plain.push(baselineRound());
    group.push(await groupRound());
  }
  const ratios = group.map((g, r) => g.perEventUs / plain[r].perEventUs);
  const cpuRatios = group.map((g, r) => g.cpuUs / plain[r].cpuUs);
  const { ours: fsyncLat, raw: rawLat } = await fsyncLatencies();
  const lagIdle = await idleLag(2000);
  const lagGroup = await lagWhileEmitting('group', 100000, 2000);
  const lagFsync = await lagWhileEmitting('fsync', 0, 2000);
  const res = {
    events: N,
    rounds: ROUNDS,
    group_per_event_us: median(group.map((g) => g.perEventUs)),
    baseline_stringify_write_per_event_us: median(plain.map((p) => p.perEventUs)),
    group_ratio: median(ratios),
    group_ratio_range: [Math.min(...ratios), Math.max(...ratios)],
    group_cpu_per_event_us: median(group.map((g) => g.cpuUs)),
    baseline_cpu_per_event_us: median(plain.map((p) => p.cpuUs)),
    group_cpu_ratio: median(cpuRatios),
    group_cpu_ratio_range: [Math.min(...cpuRatios), Math.max(...cpuRatios)],
    group_flush_wait_ms: median(group.map((g) => g.flushWaitMs)),
    fsync_p50_us: pct(fsyncLat, 0.5),
    fsync_p99_us: pct(fsyncLat, 0.99),
    raw_fsync_p50_us: pct(rawLat, 0.5),
    raw_fsync_p99_us: pct(rawLat, 0.99),
    fsync_p99_ratio: pct(fsyncLat, 0.99) / pct(rawLat, 0.99),
    lag_idle: lagIdle,
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
  const rg = (r) => `${f(r[0])}-${f(r[1])}`;
  console.log(`  group: ${f(res.group_per_event_us)} us/event vs JSON.stringify+writeSync+1 fdatasync ${f(res.baseline_stringify_write_per_event_us)} us/event -> ratio ${f(res.group_ratio)} (rounds ${rg(res.group_ratio_range)}; target <= 1.0)`);
  console.log(`  group, flush() wait after the last emit: median ${f(res.group_flush_wait_ms)} ms (in the per-event figure)`);
  console.log(`  group, main-thread CPU: ${f(res.group_cpu_per_event_us)} us/event vs ${f(res.baseline_cpu_per_event_us)} us/event -> ratio ${f(res.group_cpu_ratio)} (rounds ${rg(res.group_cpu_ratio_range)})`);
  console.log(`  fsync: p50 ${f(res.fsync_p50_us)} us, p99 ${f(res.fsync_p99_us)} us vs writeSync+fdatasyncSync p50 ${f(res.raw_fsync_p50_us)} us, p99 ${f(res.raw_fsync_p99_us)} us -> p99 ratio ${f(res.fsync_p99_ratio)} (target <= 1.2)`);
  console.log(`  event-loop lag, idle (same timer, nothing to do): p50 ${f(lagIdle.p50Ms)} ms, p99 ${f(lagIdle.p99Ms)} ms; less run-queue wait p99 ${f(lagIdle.ownP99Ms)} ms`);
  console.log(`  event-loop lag, group offered 100k ev/s (achieved ${lagGroup.perSecond}/s): p50 ${f(lagGroup.p50Ms)} ms, p99 ${f(lagGroup.p99Ms)} ms (target < 1 ms); less run-queue wait p99 ${f(lagGroup.ownP99Ms)} ms; ${lagGroup.gcs} GCs, ${f(lagGroup.gcMs)} ms paused`);
  console.log(`  event-loop lag, fsync back to back (${lagFsync.events} events): p50 ${f(lagFsync.p50Ms)} ms, p99 ${f(lagFsync.p99Ms)} ms; less run-queue wait p99 ${f(lagFsync.ownP99Ms)} ms`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
