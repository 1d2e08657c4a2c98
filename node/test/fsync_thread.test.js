'use strict';
// fsync mode's fdatasync thread: one per writer, started by its first emit, ended by close()
// once what it had pending is synced and reported (an application that opens and closes many
// emitters does not collect idle threads until garbage collection).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { getEventEmitter } = require('..');
const { tmpRoot, checkLog } = require('./helpers');

const syncTids = () => fs.readdirSync('/proc/self/task').filter((t) => {
  try {
    return fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'ledgerx-fsync';
  } catch {
    return false; // the thread ended meanwhile
  }
});
const syncThreads = () => syncTids().length;
// A field of a thread's /proc sched file (`se.slice`: Linux 6.6+), or undefined.
const schedField = (tid, name) => {
  const line = fs.readFileSync(`/proc/self/task/${tid}/sched`, 'utf8').split('\n').find((l) => l.startsWith(name));
  return line === undefined ? undefined : Number(line.split(':')[1]);
};
const kernelAtLeast = (major, minor) => {
  const [a, b] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
};

async function until(cond) {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

test('fsync: one fdatasync thread per writer, ended by close() after its pending events', async () => {
  assert.equal(syncThreads(), 0);
  const root = tmpRoot('fsync-thread');
  const em = getEventEmitter(root, { durability: 'fsync' });
  await em.emitRunStarted('r');
  assert.equal(syncThreads(), 1);
  const pending = [];
  for (let i = 0; i < 50; i++) pending.push(em.emitTrialRecorded('r', i, {}, { x: i }));
  const closed = em.close();
  await Promise.all(pending); // emitted before close(): all resolve
  await closed;
  assert.ok(await until(() => syncThreads() === 0), 'the thread ends after close()');
  assert.equal(checkLog(root).length, 51);
  const again = getEventEmitter(root, { durability: 'fsync' });
  await again.emitRunStarted('r2');
  assert.equal(syncThreads(), 1);
  await again.close();
  assert.ok(await until(() => syncThreads() === 0));
});

test('fsync: the fdatasync thread asks for a 0.1 ms slice (Linux 6.12+), keeping its nice value', async () => {
  const root = tmpRoot('fsync-slice');
  const em = getEventEmitter(root, { durability: 'fsync' });
  await em.emitRunStarted('r');
  const [tid] = syncTids();
  const main = schedField(process.pid, 'se.slice');
  if (kernelAtLeast(6, 12)) {
    // Woken by an emit or by its fdatasync's return, it runs at once instead of waiting out a
    // busy CPU's current slice (the main thread keeps the default).
    assert.equal(schedField(tid, 'se.slice'), 100000);
    assert.notEqual(main, 100000);
  }
  assert.equal(schedField(tid, 'prio'), schedField(process.pid, 'prio'), 'nice value kept');
  await em.close();
});

// The CPUs a thread may run on (/proc's Cpus_allowed_list, e.g. "0-1" or "1").
const allowed = (tid) => fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8').match(/Cpus_allowed_list:\s*(\S+)/)[1];

test('fsync: the fdatasync thread keeps to the event loop\'s CPU while one event at a time is awaited, and may run anywhere while several are in flight', async (t) => {
  const mine = allowed(process.pid);
  if (!/[-,]/.test(mine)) {
    t.skip('one CPU: nothing to keep to');
    return;
  }
  const root = tmpRoot('fsync-follow');
  const em = getEventEmitter(root, { durability: 'fsync' });
  await em.emitRunStarted('r');
  for (let i = 0; i < 3; i++) await em.emitTrialRecorded('r', i, {}, { x: i });
  const [tid] = syncTids();
  // Its wake-ups (by the emit, to the event loop) stay on one CPU instead of waking an idle one.
  assert.match(allowed(tid), /^\d+$/);
  await Promise.all([...Array(16)].map((_, i) => em.emitTrialRecorded('r', 10 + i, {}, { x: i })));
  assert.equal(allowed(tid), mine, 'with events in flight it may run on any CPU of the process');
  await em.close();
  assert.equal(checkLog(root).length, 20);
});
