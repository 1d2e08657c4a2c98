'use strict';
// What Node writes is the same log as Python's: every line passes tests/logcheck.py, the
// returned positions point at the lines, data round-trips, and the seed's methods map to the
// built-in types.

const test = require('node:test');
const assert = require('node:assert/strict');
const { getEventEmitter, SchemaError } = require('..');
const { tmpRoot, checkLog, py } = require('./helpers');

for (const durability of ['group', 'fsync', 'os']) {
  test(`${durability}: every line passes the independent checker, positions match`, async () => {
    const root = tmpRoot(durability);
    const em = getEventEmitter(root, { durability });
    const runId = 'run-1';
    const sent = [];
    const track = (p, type, data) => {
      sent.push({ p, type, data });
      return p;
    };
    const cfg = { grid: { fast: [2, 20] }, note: 'é ✓ "q" \n', big: 2 ** 53 - 1 };
    track(em.emitRunCreated(runId, 'path-only', cfg, 'fp-1', { who: 'node' }), 'run.created',
      { run_kind: 'path-only', config: cfg, data_fingerprint: 'fp-1', tags: { who: 'node' } });
    track(em.emitPhaseStarted(runId, 'plan', 0), 'phase.started', { phase: 'plan', phase_index: 0 });
    for (let i = 0; i < 300; i++) {
      const data = { trial_id: i, params: { w: i, s: `p${i}` }, metrics: { x: i / 3, y: -(i + 1) * 1e-9 } };
      track(em.emitTrialRecorded(runId, i, data.params, data.metrics), 'trial.recorded', data);
    }
    track(em.emitPhaseCompleted(runId, 'plan', 12.5, { n: 300 }), 'phase.completed',
      { phase: 'plan', duration_ms: 12.5, output_summary: { n: 300 } });
    track(em.emitBaselineCompleted(runId, 'bh', { pnl: 0.25 }), 'baseline.completed',
      { baseline: 'bh', metrics: { pnl: 0.25 } });
    track(em.emitRunCompleted(runId, { best: 1 }, ['runs/run-1/summary.json']), 'run.completed',
      { summary: { best: 1 }, artifact_paths: ['runs/run-1/summary.json'] });
    track(em.emit('run.heartbeat', {}, { runId }), 'run.heartbeat', {});
    track(em.emitAlert('a-1', 'node', 'low', { k: [1, 2] }), 'alert.ingested',
      { alert_id: 'a-1', source: 'node', severity: 'low', payload: { k: [1, 2] } });
    const positions = await Promise.all(sent.map((s) => s.p));
    await em.close();

    const events = checkLog(root);
    assert.equal(events.length, sent.length);
    events.forEach((ev, i) => {
      assert.equal(ev.event_type, sent[i].type);
      assert.equal(ev.seq, i + 1, 'order follows call order');
      assert.equal(ev.run_id, sent[i].type === 'alert.ingested' ? null : runId);
      assert.deepEqual(ev.data, sent[i].data);
      assert.deepEqual(positions[i], { file: ev._file, offset: ev._offset });
    });
  });
}

test('values: Date as RFC 3339 UTC, BigInt as integer, undefined properties left out', async () => {
  const root = tmpRoot('values');
  const em = getEventEmitter(root, { durability: 'os' });
  await em.emit('run.heartbeat', {
    at: new Date(Date.UTC(2024, 1, 29, 23, 59, 58, 123)),
    n: 9007199254740993n,
    gone: undefined,
    neg: -0,
    f: 1e21,
    nested: [{ a: null }, [true, false]],
  }, { runId: 'r' });
  await em.close();
  const [ev] = checkLog(root);
  assert.deepEqual(Object.keys(ev.data), ['at', 'n', 'neg', 'f', 'nested']);
  assert.equal(ev.data.at, '2024-02-29T23:59:58.123000Z');
  assert.equal(ev.data.neg, 0);
  assert.equal(ev.data.f, 1e21);
  assert.deepEqual(ev.data.nested, [{ a: null }, [true, false]]);
  // BigInt beyond 2**53 stays exact: read it back as text.
  const exact = py(`import json,sys,glob
p = glob.glob(sys.argv[1] + '/events/day=*/part-*.jsonl')[0]
print(json.dumps(str(json.loads(open(p).readline())['data']['n'])))`, root);
  assert.equal(exact, '9007199254740993');
});

test('a type registered from Python validates in Node (registry re-read)', async () => {
  const root = tmpRoot('registry');
  const em = getEventEmitter(root, { durability: 'fsync' });
  await assert.rejects(em.emit('fill.booked', { qty: 1 }), (e) => e instanceof SchemaError &&
    /unknown event type 'fill.booked'/.test(e.message));
  py(`import sys, json, ledgerx
led = ledgerx.open(sys.argv[1])
led.schema.register("fill.booked", {"type": "object", "required": ["qty"],
  "properties": {"qty": {"type": "integer", "minimum": 1}}})
led.close()
print(json.dumps(True))`, root);
  await em.emit('fill.booked', { qty: 3 }, { runId: 'r' });
  await assert.rejects(em.emit('fill.booked', { qty: 0 }), (e) => e.name === 'SchemaError' &&
    e.message.includes('fill.booked v1') && e.message.includes('data.qty'));
  await em.close();
  const events = checkLog(root);
  assert.deepEqual(events.map((e) => [e.event_type, e.data.qty]), [['fill.booked', 3]]);
});

// Each (event type, run id) pair keeps its schema between emits (a per-pair cache): a newer
// version registered elsewhere must still take over as soon as the registry is re-read.
test('a new version registered from Python replaces the cached schema of a pair', async () => {
  const root = tmpRoot('registry-v2');
  const em = getEventEmitter(root, { durability: 'group' });
  const reg = (schema) => py(`import sys, json, ledgerx
led = ledgerx.open(sys.argv[1])
v = led.schema.register("fill.booked", json.loads(sys.argv[2]))
led.close()
print(json.dumps(v))`, root, JSON.stringify(schema));
  const qty = { qty: { type: 'integer', minimum: 1 } };
  assert.equal(reg({ type: 'object', required: ['qty'], properties: qty }), 1);
  em.reloadSchemas();
  await em.emit('fill.booked', { qty: 3 }, { runId: 'r' });
  await em.emit('fill.booked', { qty: 4 }, { runId: 'r' }); // from the pair's cache
  assert.equal(reg({ type: 'object', required: ['qty', 'venue'],
    properties: { ...qty, venue: { type: 'string' } } }), 2);
  em.reloadSchemas();
  await assert.rejects(em.emit('fill.booked', { qty: 5 }, { runId: 'r' }), (e) =>
    e.name === 'SchemaError' && e.message.includes('fill.booked v2') && e.version === 2);
  await em.emit('fill.booked', { qty: 6, venue: 'x' }, { runId: 'r' });
  await em.close();
  const events = checkLog(root);
  assert.deepEqual(events.map((e) => [e.schema_version, e.data.qty]), [[1, 3], [1, 4], [2, 6]]);
});

test('one emitter per process per root; a closed one is replaced', async () => {
  const root = tmpRoot('single');
  const a = getEventEmitter(root);
  assert.equal(getEventEmitter(root), a);
  const old = process.env.LEDGERX_ROOT;
  process.env.LEDGERX_ROOT = root;
  try {
    assert.equal(getEventEmitter(), a, 'root defaults to $LEDGERX_ROOT');
  } finally {
    if (old === undefined) delete process.env.LEDGERX_ROOT;
    else process.env.LEDGERX_ROOT = old;
  }
  await a.close();
  await assert.rejects(a.emitRunStarted('r'), (e) => e.name === 'ClosedError');
  const b = getEventEmitter(root);
  assert.notEqual(b, a);
  await b.emitRunStarted('r');
  await b.close();
  assert.equal(checkLog(root).length, 1);
});

test('the JSON.stringify fast path and the native serializer write the same values', async () => {
  const root = tmpRoot('paths');
  const em = getEventEmitter(root, { durability: 'os' });
  const samples = [
    { f: [0.1, 1e-7, 1e21, 1.5e300, 5e-324, -2.5, 2 ** 53, -(2 ** 63), 123456789.125] },
    { s: ['', 'é', '✓', '😀', '"\\/', '\u0000\u001f\u007f', '\u2028\u2029', 'a\tb\nc\rd\be\ff'] },
    { nested: { a: [[], {}, [null, true, false]], 'k "q"': { '': 0 } } },
  ];
  for (const data of samples) {
    em._w.emitJson('run.heartbeat', JSON.stringify(data), 'fast', null); // index.js fast path
    em._w.emit('run.heartbeat', data, 'slow', null); // native walk
  }
  await em.close();
  const events = checkLog(root);
  assert.equal(events.length, 2 * samples.length);
  for (let i = 0; i < samples.length; i++) {
    assert.deepEqual(events[2 * i].data, samples[i]);
    assert.deepEqual(events[2 * i + 1].data, samples[i]);
  }
});

test('fast path: text that is not ASCII arrives whole and as the same characters', async () => {
  // Latin-1 (one byte in V8, not one in UTF-8), a character whose low byte is ASCII ('Ł' is
  // U+0141), two-byte and astral ones, beside pure ASCII events; and JSON texts longer than the
  // native side's first 4 KiB copy, where a 2-, 3- or 4-byte character does not fit the room
  // left (V8 stops before it: that copy must be taken as cut off, not as the whole text).
  const root = tmpRoot('unicode');
  const em = getEventEmitter(root, { durability: 'os' });
  const texts = ['é', 'ÿ', 'Ł', 'ŁA', '€', '😀', 'ｱ', 'plain', 'x'.repeat(300) + 'Ł',
    'é'.repeat(5000), '€'.repeat(3000), '😀'.repeat(3000), 'a' + 'é'.repeat(5000)];
  const sent = [];
  for (const t of texts) {
    sent.push({ [t]: t, ascii: 'a', n: 1 });
    sent.push({ ascii: 'only' });
  }
  for (const data of sent) await em.emit('run.heartbeat', data, { runId: 'u' });
  await em.close();
  assert.deepEqual(checkLog(root).map((ev) => ev.data), sent);
});

test('each event keeps its own type and run id when pairs alternate (and the pair table starts afresh past 1,024)', async () => {
  const root = tmpRoot('heads');
  const em = getEventEmitter(root, { durability: 'os' });
  const sent = [];
  for (let i = 0; i < 1600; i++) { // 1,069 pairs: one fresh start of the table
    const runId = `r${i % 3 === 0 ? 0 : i}`;
    for (const r of [runId, 'r0', 'main']) { // the same type back to back, another run each
      sent.push(['trial.recorded', r]);
      em.emitTrialRecorded(r, i, {}, { x: i });
    }
    sent.push(['run.heartbeat', 'main']);
    em.emitRunHeartbeat('main');
    if (i % 100 === 0) {
      sent.push(['alert.ingested', null]);
      em.emitAlert(`a${i}`, 'node', 'low', {});
    }
  }
  await em.close();
  assert.deepEqual(checkLog(root).map((ev) => [ev.event_type, ev.run_id]), sent);
});
