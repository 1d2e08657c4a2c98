'use strict';
// Group mode keeps its pending Promises in rings (index.js `_queue`): each Promise still resolves
// to its own event's position through the rings' growth (thousands pending at once), their
// wrap-around (settled a slice at a time), part rotation (the file changes between entries) and
// events of the native serializer's path between fast-path ones.

const test = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('..');
const { tmpRoot, checkLog } = require('./helpers');

const turn = () => new Promise((r) => setImmediate(r));

test('group: every Promise resolves to its own position through ring growth, wrap-around and part rotation', async () => {
  const root = tmpRoot('ring');
  const em = new EventEmitter(root, { durability: 'group', maxPartBytes: 64 * 1024 });
  const ps = [];
  const emit = (i) => {
    // Every 97th event holds a Date: the native serializer's path (its seq comes from the addon).
    const params = i % 97 === 0 ? { w: i % 7, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i % 60)) } : { w: i % 7 };
    ps.push(em.emitTrialRecorded('ring', i, params, { x: i }));
  };
  let i = 0;
  while (i < 5000) emit(i++); // pending all at once: the rings grow 1,024 -> 8,192
  await ps[ps.length - 1];
  assert.equal(em._res.length, 1024, 'the burst\'s rings are let go once it settled');
  for (let slice = 0; slice < 40; slice++) { // settled between slices: the indices wrap
    for (let k = 0; k < 700; k++) emit(i++);
    await turn();
  }
  const positions = await Promise.all(ps);
  await em.close();
  const events = checkLog(root);
  assert.equal(events.length, ps.length);
  assert.ok(new Set(events.map((ev) => ev._file)).size > 10, 'parts rotated');
  events.forEach((ev, n) => {
    assert.equal(ev.seq, n + 1);
    assert.equal(ev.data.trial_id, n);
    assert.deepEqual(positions[n], { file: ev._file, offset: ev._offset }, `event ${n}`);
  });
});

test('group: a settled event\'s Promise is not kept by the queue while later events wait', async () => {
  // Kept settled entries are what every scavenge copies: the event-loop lag follows them.
  require('node:v8').setFlagsFromString('--expose-gc');
  const gc = require('node:vm').runInNewContext('gc');
  const em = new EventEmitter(tmpRoot('ring-drop'), { durability: 'group' });
  const refs = [];
  // 1,500 pending at once: the rings grow (1,024 -> 2,048) with these entries in them.
  for (let i = 0; i < 1500; i++) refs.push(new WeakRef(em.emitTrialRecorded('drop', i, {}, { x: i })));
  const last = em.emitTrialRecorded('drop', 1500, {}, { x: 1500 });
  await last; // every earlier one is settled too (seq order)
  await turn();
  const later = em.emitTrialRecorded('drop', 1501, {}, { x: 1501 }); // pending during the collection
  gc();
  const kept = refs.filter((r) => r.deref() !== undefined).length;
  await later;
  await em.close();
  assert.equal(kept, 0, `${kept} settled Promises still reachable`);
});
