'use strict';
// A disk fault (fdatasync failing with EIO, injected by strace) rejects the event's Promise with
// LedgerIOError carrying the errno code and the part's path; the part is abandoned and the next
// event goes to a new part. Nothing resolved is missing from the log.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { tmpRoot, checkLog, REPO } = require('./helpers');

const SCRIPT = `
const lx = require(${JSON.stringify(path.join(REPO, 'node'))});
const [root, mode] = process.argv.slice(1);
const em = lx.getEventEmitter(root, { durability: mode });
(async () => {
  const out = [];
  for (let i = 0; i < 4; i++) {
    try {
      const p = await em.emitTrialRecorded('f', i, {}, { x: i });
      out.push({ i, ok: p.file });
    } catch (e) {
      out.push({ i, name: e.name, code: e.code, errno: e.errno, path: e.path, ioError: e instanceof lx.LedgerIOError });
    }
  }
  await em.close().catch(() => {});
  console.log(JSON.stringify(out));
})();
`;

for (const mode of ['fsync', 'group']) {
  test(`${mode}: a failed fdatasync rejects with LedgerIOError (code, path); later events use a new part`, () => {
    const root = tmpRoot(`fault-${mode}`);
    const r = spawnSync('strace', [
      '-f', '-qq', '--seccomp-bpf', '-o', '/dev/null',
      '-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:when=2',
      process.execPath, '-e', SCRIPT, '--', root, mode,
    ], {
      encoding: 'utf8',
      timeout: 120000,
      // strace counts calls per thread: one thread (fsync mode: the writer's fdatasync thread;
      // group: the flusher) makes the 2nd fdatasync the 2nd event's.
      env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop());
    assert.ok(out[0].ok, JSON.stringify(out));
    assert.deepEqual(
      { name: out[1].name, code: out[1].code, errno: out[1].errno, ioError: out[1].ioError },
      { name: 'LedgerIOError', code: 'EIO', errno: 5, ioError: true },
    );
    assert.match(out[1].path, /events\/day=\d{4}-\d\d-\d\d\/part-\d{6}\.jsonl/);
    assert.ok(out[2].ok && out[3].ok, JSON.stringify(out));
    assert.notEqual(out[2].ok, out[0].ok, 'the failed part is abandoned');
    const trials = checkLog(root, { contiguous_seq: false }).map((e) => e.data.trial_id);
    for (const o of out) if (o.ok) assert.ok(trials.includes(o.i), `resolved event ${o.i} missing`);
  });
}

// Group mode settles Promises by seq ("durable up to seq N"): an event emitted while an earlier
// batch was committing belongs to the next batch and must follow that batch's fate, even when
// the earlier batch's report reaches JavaScript after the event was emitted.
const GROUP_SCRIPT = `
const lx = require(${JSON.stringify(path.join(REPO, 'node'))});
const em = lx.getEventEmitter(process.argv[1], { durability: 'group' });
const settle = (p) => p.then((pos) => ({ ok: pos.file }), (e) => ({ name: e.name, code: e.code }));
const first = settle(em.emitTrialRecorded('f', 0, {}, { x: 0 }));
// Block the event loop while the flusher commits event 0 (fdatasync #1): its report can only
// reach JavaScript after events 1-3 are queued; they go to the next commit (fdatasync #2, EIO).
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
const rest = [1, 2, 3].map((i) => settle(em.emitTrialRecorded('f', i, {}, { x: i })));
Promise.all([first, ...rest]).then(async (out) => {
  await em.close().catch(() => {});
  console.log(JSON.stringify(out));
});
`;

test('group: an event queued while the previous batch committed settles with its own batch', () => {
  const root = tmpRoot('fault-batches');
  const r = spawnSync('strace', [
    '-f', '-qq', '--seccomp-bpf', '-o', '/dev/null',
    '-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:when=2',
    process.execPath, '-e', GROUP_SCRIPT, '--', root,
  ], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.ok(out[0].ok, JSON.stringify(out));
  // Event 1 is the first of the failed commit: resolving it would claim a durability it lacks.
  assert.deepEqual(out[1], { name: 'LedgerIOError', code: 'EIO' }, JSON.stringify(out));
  const trials = checkLog(root, { contiguous_seq: false }).map((e) => e.data.trial_id);
  out.forEach((o, i) => o.ok && assert.ok(trials.includes(i), `resolved event ${i} missing`));
});

// Group mode: events queued back to back can be committed apart; each event takes the outcome
// of the first report that covered it. Events 1 and 2 wait together (event 0's wait is
// outstanding when they are queued); event 1 is committed with event 0 (fdatasync #1, reported
// at once), event 2 alone (fdatasync #2, EIO): event 1 resolves, event 2 rejects.
const SPLIT_SCRIPT = `
const lx = require(${JSON.stringify(path.join(REPO, 'node'))});
const em = lx.getEventEmitter(process.argv[1], { durability: 'group', commitIntervalMs: 100 });
const settle = (p) => p.then((pos) => ({ ok: pos.file }), (e) => ({ name: e.name, code: e.code }));
const block = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const ps = [0, 1].map((i) => settle(em.emitTrialRecorded('f', i, {}, { x: i })));
block(400); // the flusher commits events 0 and 1; the pool's waiter takes that report
ps.push(settle(em.emitTrialRecorded('f', 2, {}, { x: 2 })));
Promise.all(ps).then(async (out) => {
  await em.close().catch(() => {});
  console.log(JSON.stringify(out));
});
`;

test('group: events queued together but committed apart each take their own commit\'s outcome', () => {
  const root = tmpRoot('fault-split');
  const r = spawnSync('strace', [
    '-f', '-qq', '--seccomp-bpf', '-o', '/dev/null',
    '-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:when=2',
    process.execPath, '-e', SPLIT_SCRIPT, '--', root,
  ], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.ok(out[0].ok && out[1].ok, `events 0 and 1 were committed: ${JSON.stringify(out)}`);
  assert.deepEqual(out[2], { name: 'LedgerIOError', code: 'EIO' }, JSON.stringify(out));
  const trials = checkLog(root, { contiguous_seq: false }).map((e) => e.data.trial_id);
  out.forEach((o, i) => o.ok && assert.ok(trials.includes(i), `resolved event ${i} missing`));
});

// fsync mode coalesces: the writer's fdatasync thread syncs every line written while it was busy
// with one fdatasync of their part. Lines written to a part before an fdatasync of it failed may
// be lost whatever a later fdatasync says, so none of them is reported durable: the 2nd
// fdatasync is slowed to 300 ms and fails (EIO); B, C, D are written while it runs (queued as
// one batch) and all reject with A; E, emitted after, goes to a new part and resolves.
const BATCH_SCRIPT = `
const lx = require(${JSON.stringify(path.join(REPO, 'node'))});
const em = lx.getEventEmitter(process.argv[1], { durability: 'fsync' });
const settle = (p) => p.then((pos) => ({ ok: pos.file }), (e) => ({ name: e.name, code: e.code }));
(async () => {
  const first = await settle(em.emitTrialRecorded('f', 0, {}, { x: 0 }));
  const a = settle(em.emitTrialRecorded('f', 1, {}, { x: 1 }));
  await new Promise((r) => setTimeout(r, 100)); // the thread is in the slowed fdatasync
  const rest = [2, 3, 4].map((i) => settle(em.emitTrialRecorded('f', i, {}, { x: i })));
  const batch = await Promise.all([a, ...rest]);
  const after = await settle(em.emitTrialRecorded('f', 5, {}, { x: 5 }));
  await em.close().catch(() => {});
  console.log(JSON.stringify([first, ...batch, after]));
})();
`;

test('fsync: a failed fdatasync rejects every pending Promise of its part; none resolves before an fdatasync', () => {
  const root = tmpRoot('fault-fsync-batch');
  const r = spawnSync('strace', [
    '-f', '-qq', '--seccomp-bpf', '-o', '/dev/null', '-e', 'trace=fdatasync',
    '-e', 'inject=fdatasync:error=EIO:delay_enter=300000:when=2',
    process.execPath, '-e', BATCH_SCRIPT, '--', root,
  ], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.ok(out[0].ok, JSON.stringify(out));
  for (const i of [1, 2, 3, 4]) {
    assert.deepEqual(out[i], { name: 'LedgerIOError', code: 'EIO' }, `event ${i}: ${JSON.stringify(out)}`);
  }
  assert.ok(out[5].ok && out[5].ok !== out[0].ok, `a new part after the failure: ${JSON.stringify(out)}`);
  const trials = checkLog(root, { contiguous_seq: false }).map((e) => e.data.trial_id);
  out.forEach((o, i) => o.ok && assert.ok(trials.includes(i), `resolved event ${i} missing`));
});
