'use strict';
// Bad input rejects with a typed error and writes nothing: the log bytes are unchanged and the
// next good event still gets the next seq (the checker requires gap-free seqs per writer).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { getEventEmitter, SchemaError, ConfigError, LedgerIOError } = require('..');
const { tmpRoot, checkLog, logBytes } = require('./helpers');

const cyclic = { a: 1 };
cyclic.self = cyclic;
class Point {
  constructor() {
    this.x = 1;
  }
}
const t = (params, metrics) => ['trial.recorded', { trial_id: 1, params, metrics }, { runId: 'r' }];

// [label, eventType, data, options, what the message must say]
const MATRIX = [
  ['metrics value not a number', ...t({}, { x: 'high' }), /trial.recorded v1: data.metrics.x: expected number/],
  ['params not an object', ...t([1], {}), /data.params/],
  ['data a string', 'run.heartbeat', 'hello', { runId: 'r' }, /data must be an object, not string/],
  ['data null', 'run.heartbeat', null, { runId: 'r' }, /data must be an object/],
  ['data an array', 'run.heartbeat', [], { runId: 'r' }, /run.heartbeat v1: data/],
  ['missing required field', 'phase.started', { phase: 'p' }, { runId: 'r' }, /missing required field 'phase_index'/],
  ['phase_index not an int', 'phase.started', { phase: 'p', phase_index: 1.5 }, { runId: 'r' }, /data.phase_index/],
  ['negative duration', 'phase.completed', { phase: 'p', duration_ms: -1 }, { runId: 'r' }, /data.duration_ms/],
  ['unknown type', 'no.such.type', {}, { runId: 'r' }, /unknown event type 'no.such.type'/],
  ['event type not a string', 42, {}, { runId: 'r' }, /event_type must be a string/],
  ['NaN', ...t({}, { x: NaN }), /data.metrics.x: NaN is not allowed/],
  ['Infinity', ...t({ lr: Infinity }, {}), /data.params.lr: inf is not allowed/],
  ['-Infinity in an array', ...t({ l: [1, -Infinity] }, {}), /data.params.l\[1\]: -inf is not allowed/],
  ['oversize', ...t({ blob: 'x'.repeat(5000) }, {}), /over max_event_bytes 4096/],
  ['bad run id (path)', 'run.heartbeat', {}, { runId: '../etc' }, /invalid run_id/],
  ['bad run id (empty)', 'run.heartbeat', {}, { runId: '' }, /invalid run_id/],
  ['bad run id (space)', 'run.heartbeat', {}, { runId: 'a b' }, /invalid run_id/],
  ['bad run id (too long)', 'run.heartbeat', {}, { runId: 'a'.repeat(129) }, /invalid run_id/],
  ['run id not a string', 'run.heartbeat', {}, { runId: 7 }, /run_id must be a string/],
  ['run-scoped type without run id', 'run.heartbeat', {}, {}, /run_id/],
  ['lone surrogate', 'run.heartbeat', { s: 'a\uD800b' }, { runId: 'r' }, /data.s: string has a lone surrogate/],
  ['lone surrogate in a key', 'run.heartbeat', { ['k\uDC00']: 1 }, { runId: 'r' }, /lone surrogate/],
  ['function', 'run.heartbeat', { f() {} }, { runId: 'r' }, /data.f: a function is not JSON/],
  ['symbol', 'run.heartbeat', { s: Symbol('x') }, { runId: 'r' }, /data.s: a Symbol is not JSON/],
  ['class instance', 'run.heartbeat', { p: new Point() }, { runId: 'r' }, /data.p: only plain objects/],
  ['Map', 'run.heartbeat', { m: new Map([[1, 2]]) }, { runId: 'r' }, /data.m: only plain objects/],
  ['Buffer', 'run.heartbeat', { b: Buffer.from('x') }, { runId: 'r' }, /data.b: only plain objects/],
  ['cycle', 'run.heartbeat', { c: cyclic }, { runId: 'r' }, /nested deeper than/],
  ['BigInt out of range', 'run.heartbeat', { n: 2n ** 64n }, { runId: 'r' }, /data.n: BigInt outside/],
  ['invalid Date', 'run.heartbeat', { d: new Date(NaN) }, { runId: 'r' }, /data.d: an invalid Date/],
  ['undefined in an array', 'run.heartbeat', { a: [undefined] }, { runId: 'r' }, /data.a\[0\]: undefined is not JSON/],
  ['unknown schema version', 'run.heartbeat', {}, { runId: 'r', schemaVersion: 9 }, /unknown schema_version 9/],
];

for (const durability of ['group', 'fsync']) {
  test(`${durability}: the bad-input matrix rejects with SchemaError and writes nothing`, async () => {
    const root = tmpRoot(`bad-${durability}`);
    const em = getEventEmitter(root, { durability, maxEventBytes: 4096 });
    await em.emit('run.heartbeat', { n: 0 }, { runId: 'r' });
    let good = 1;
    for (const [label, type, data, opts, msg] of MATRIX) {
      const before = logBytes(root);
      let thrown = null;
      const p = em.emit(type, data, opts); // never throws synchronously
      await p.then(
        () => assert.fail(`${label}: accepted`),
        (e) => {
          thrown = e;
        },
      );
      assert.ok(thrown instanceof SchemaError, `${label}: ${thrown}`);
      assert.equal(thrown.name, 'SchemaError');
      assert.match(thrown.message, msg, label);
      if (label === 'NaN') {
        assert.deepEqual([thrown.eventType, thrown.version, thrown.path], ['trial.recorded', 1, 'data.metrics.x']);
      }
      await em.flush();
      assert.equal(logBytes(root), before, `${label}: wrote something`);
      await em.emit('run.heartbeat', { n: good++ }, { runId: 'r' });
    }
    await em.close();
    const events = checkLog(root); // seqs must be gap-free: no rejected event used one
    assert.deepEqual(events.map((e) => e.data.n), [...Array(good).keys()]);
  });
}

test('JSON text with a lone surrogate escape is refused by the native side too', async () => {
  const root = tmpRoot('escape');
  const em = getEventEmitter(root, { durability: 'os' });
  for (const text of ['{"s":"a\\ud800b"}', '{"k\\udc00":1}']) {
    assert.throws(() => em._w.emitJson('run.heartbeat', text, 'r', null), /lone surrogate/);
  }
  em._w.emitJson('run.heartbeat', '{"s":"\\\\ud800 is text","e":"\\ud83d\\ude00"}', 'r', null);
  await em.close();
  assert.deepEqual(checkLog(root).map((e) => e.data), [{ s: '\\ud800 is text', e: '😀' }]);
});

test('bad options are ConfigErrors; an unusable root is a LedgerIOError with errno code and path', () => {
  const root = tmpRoot('badopts');
  assert.throws(() => getEventEmitter(root, { durability: 'sometimes' }), ConfigError);
  assert.throws(() => getEventEmitter(root, { maxEventBytes: 0 }), ConfigError);
  assert.throws(() => getEventEmitter(root, { commitIntervalMs: 1.5 }), ConfigError);
  const file = path.join(root, 'not-a-dir');
  fs.writeFileSync(file, 'x');
  assert.throws(
    () => getEventEmitter(file),
    (e) => e instanceof LedgerIOError && e.name === 'LedgerIOError' && e.code === 'ENOTDIR' &&
      e.errno === 20 && e.path.startsWith(file),
  );
});
