'use strict';
// What the scavenges cost during bench_emit.js's group lag stretch (100k events/s offered for
// 2 s, at most 10 emits per setImmediate turn, Promises not kept): the lag p99 of a 1 ms timer,
// and from V8's own trace (--trace-gc-nvp, this script run again as a child with it) the
// collections in the stretch, their mean pause and the bytes each copied (survived + promoted).
// --warm R first runs R group rounds of 100k emits with every Promise kept, as bench_emit.js
// does before its lag stretch (they grow V8's young generation to its maximum); --noop emits
// nothing (the same user objects and JSON.stringify of `data`, no addon, and a warm-up keeping
// 100k Promises per round): the floor of this machine and V8.
// Usage: node benches/node/lag_gc.js [--pkg DIR | --noop] [--warm R] [--ms MS]

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance, monitorEventLoopDelay } = require('node:perf_hooks');

const argv = process.argv.slice(2);
const arg = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const WARM = Number(arg('--warm', 0));
const MS = Number(arg('--ms', 2000));
const NOOP = argv.includes('--noop');

const params = (i) => ({ fast: 2 + (i % 18), slow: 30 + (i % 60), stop: 0.02 });
const metrics = (i) => ({ pnl: i / 7, sharpe: 1.25, max_drawdown: 0.125, trades: 42 });

function parent() {
  const r = spawnSync(process.execPath, ['--trace-gc-nvp', __filename, '--child', ...argv], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  let on = false;
  const gcs = [];
  let res = null;
  for (const line of r.stdout.split('\n')) {
    if (line === 'MARK start') on = true;
    else if (line === 'MARK end') on = false;
    else if (line.startsWith('RESULT ')) res = JSON.parse(line.slice(7));
    else if (on && line.includes('pause=')) {
      const f = Object.fromEntries(line.split(/\s+/).filter((kv) => kv.includes('=')).map((kv) => kv.split('=')));
      gcs.push({ pause: Number(f.pause), copied: Number(f.new_space_survived || 0) + Number(f.promoted || 0) });
    }
  }
  const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const who = NOOP ? 'no-op emitter' : arg('--pkg', 'node/');
  console.log(`${who}, warm-up ${WARM} rounds: idle lag p99 ${res.idleP99.toFixed(2)} ms; stretch (${res.events} events) lag p99 ${res.p99.toFixed(2)} ms, max ${res.max.toFixed(2)} ms; ${gcs.length} GCs, pause mean ${mean(gcs.map((g) => g.pause)).toFixed(2)} ms, total ${gcs.reduce((a, g) => a + g.pause, 0).toFixed(1)} ms; copied per GC mean ${(mean(gcs.map((g) => g.copied)) / 1024).toFixed(0)} KB`);
}

async function child() {
  const lx = NOOP ? null : require(path.resolve(arg('--pkg', path.join(__dirname, '..', '..', 'node'))));
  const base = fs.mkdtempSync(path.join(process.env.LEDGERX_BENCH_DIR || os.tmpdir(), 'ledgerx-lag-gc-'));
  let sink = 0;
  const noop = {
    emitTrialRecorded(runId, trialId, p, m) {
      sink += JSON.stringify({ trial_id: trialId, params: p, metrics: m }).length;
    },
    emitRunStarted: async () => {},
    flush: async () => {},
    close: async () => {},
  };
  const open = (name) => (lx ? lx.getEventEmitter(path.join(base, name), { durability: 'group' }) : noop);
  for (let r = 0; r < WARM; r++) {
    const em = open(`w${r}`);
    await em.emitRunStarted('bench');
    const ps = new Array(100000);
    for (let i = 0; i < ps.length; i++) {
      ps[i] = lx ? em.emitTrialRecorded('bench', i, params(i), metrics(i))
        : Promise.resolve(noop.emitTrialRecorded('bench', i, params(i), metrics(i)));
    }
    await em.flush();
    await Promise.all(ps);
    await em.close();
  }
  const lagP = (h, p) => Math.max(0, h.percentile(p) / 1e6 - 1);
  const idle = monitorEventLoopDelay({ resolution: 1 });
  idle.enable();
  await new Promise((r) => setTimeout(r, 1000));
  idle.disable();
  const em = open('lag');
  await em.emitRunStarted('bench');
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  console.log('MARK start');
  let i = 0;
  const t0 = performance.now();
  await new Promise((resolve) => {
    const turn = () => {
      const now = performance.now();
      if (now - t0 >= MS) return resolve();
      const due = Math.min(i + 10, Math.floor((now - t0) * 100));
      while (i < due) em.emitTrialRecorded('bench', i, params(i), metrics(i++));
      setImmediate(turn);
    };
    setImmediate(turn);
  });
  await em.flush();
  console.log('MARK end');
  h.disable();
  await em.close();
  fs.rmSync(base, { recursive: true, force: true });
  console.log(`RESULT ${JSON.stringify({ events: i, idleP99: lagP(idle, 99), p99: lagP(h, 99), max: Math.max(0, h.max / 1e6 - 1), sink })}`);
}

if (argv.includes('--child')) {
  child().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  parent();
}
