'use strict';
// The typings type-check (tsc --strict, Debian's node-typescript) against the seed's usage in
// examples/backtest.ts, and the compiled example writes a log the checker accepts.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { tmpRoot, checkLog, REPO } = require('./helpers');

const PKG = path.join(REPO, 'node');

test('index.d.ts and the TypeScript example compile (strict) and the example runs', () => {
  const tsc = spawnSync('tsc', ['-p', PKG], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `tsc: ${tsc.stdout}${tsc.stderr}`);
  const root = tmpRoot('ts');
  const r = spawnSync(process.execPath, [path.join(PKG, 'build', 'backtest.js'), root], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const last = JSON.parse(r.stdout);
  const events = checkLog(root);
  assert.deepEqual(events.map((e) => e.event_type), [
    'run.created', 'run.started', 'phase.started',
    ...Array(10).fill('trial.recorded'),
    'phase.completed', 'baseline.completed', 'run.completed',
  ]);
  const end = events[events.length - 1];
  assert.deepEqual(last, { file: end._file, offset: end._offset });
});

test('a type error in user code is caught by the typings', () => {
  const bad = path.join(tmpRoot('tsbad'), 'bad.ts');
  require('node:fs').writeFileSync(bad, `import { getEventEmitter } from ${JSON.stringify(path.join(PKG, 'index'))};
const em = getEventEmitter('x', { durability: 'sometimes' });
em.emitTrialRecorded('r', 1, {}, { pnl: 'high' });
`);
  const tsc = spawnSync('tsc', ['--noEmit', '--strict', '--lib', 'es2020', bad], { encoding: 'utf8' });
  assert.notEqual(tsc.status, 0);
  assert.match(tsc.stdout, /"sometimes"/);
  assert.match(tsc.stdout, /Type 'string' is not assignable to type 'number'/);
});
