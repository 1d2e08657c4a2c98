'use strict';
// Real processes: Node and Python writers in one root at once, SIGKILL, SIGTERM, process.exit
// and child processes.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { tmpRoot, checkLog, spawnNode, waitExit, PYTHON, REPO } = require('./helpers');

const NODE_WORKER = `
const [root, name, n, mode] = process.argv.slice(1);
const em = lx.getEventEmitter(root, { durability: mode });
(async () => {
  let batch = [];
  for (let i = 0; i < Number(n); i++) {
    batch.push(em.emitTrialRecorded(name, i, { w: name }, { x: i / 3 }));
    if (batch.length === 1000) { await Promise.all(batch); batch = []; }
  }
  await Promise.all(batch);
  await em.close();
})().catch((e) => { console.error(e); process.exit(1); });
`;

const PY_WORKER = `
import sys, ledgerx
root, name, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
led = ledgerx.open(root, durability=mode)
for i in range(n):
    led.emit("trial.recorded", {"trial_id": i, "params": {"w": name}, "metrics": {"x": i / 3}},
             run_id=name)
led.close()
`;

function cli(args) {
  const { spawnSync } = require('node:child_process');
  const r = spawnSync(PYTHON, ['-m', 'ledgerx', ...args], { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 0, `ledgerx ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

test('3 Node + 2 Python writers in one root: every event once, clean seqs, indexed once', async () => {
  const root = tmpRoot('mixed');
  const n = 2500;
  const kids = [
    spawnNode(NODE_WORKER, [root, 'node0', String(n), 'group']),
    spawnNode(NODE_WORKER, [root, 'node1', String(n), 'fsync']),
    spawnNode(NODE_WORKER, [root, 'node2', String(n), 'os']),
    spawn(PYTHON, ['-c', PY_WORKER, root, 'py0', String(n), 'group'], { cwd: REPO }),
    spawn(PYTHON, ['-c', PY_WORKER, root, 'py1', String(n), 'fsync'], { cwd: REPO }),
  ];
  const results = await Promise.all(kids.map(waitExit));
  results.forEach((r, i) => assert.equal(r.code, 0, `writer ${i}: ${r.stderr}`));

  const events = checkLog(root); // format, crc, and gap-free seqs per writer
  assert.equal(events.length, 5 * n);
  const seen = new Set(events.map((e) => `${e.run_id}/${e.data.trial_id}`));
  assert.equal(seen.size, 5 * n, 'every event exactly once');
  assert.equal(new Set(events.map((e) => e.writer)).size, 5);
  const runsPerFile = new Map(); // one writer per part at a time: writers never interleave
  for (const e of events) {
    const runs = runsPerFile.get(e._file) || [];
    if (runs[runs.length - 1] !== e.writer) runs.push(e.writer);
    runsPerFile.set(e._file, runs);
  }
  for (const [file, runs] of runsPerFile) {
    assert.equal(new Set(runs).size, runs.length, `${file}: writers interleave`);
  }

  cli(['rebuild', '--root', root]);
  const verify = JSON.parse(cli(['verify', '--root', root, '--json']));
  assert.equal(verify.ok, true, JSON.stringify(verify.problems));
  assert.equal(verify.events, 5 * n);
  const q = cli(['query', '--root', root, '--json',
    'select count(*) as n, count(distinct event_id) as ids from events']);
  assert.deepEqual(JSON.parse(q), [{ n: 5 * n, ids: 5 * n }]);
});

const KILL_ME = `
const [root, mode] = process.argv.slice(1);
const em = lx.getEventEmitter(root, { durability: mode });
const fs = require('node:fs');
let i = 0;
function next() {
  const id = i++;
  em.emitTrialRecorded('k', id, {}, { x: 1 }).then(() => fs.writeSync(1, id + '\\n'));
  if (id % 50 === 49) setImmediate(next); else next();
}
next();
`;

for (const mode of ['fsync', 'group']) {
  test(`SIGKILL of a ${mode}-mode Node writer loses no event whose Promise resolved`, async () => {
    const root = tmpRoot(`kill-${mode}`);
    for (let round = 0; round < 3; round++) {
      const child = spawnNode(KILL_ME, [root, mode]);
      let acked = '';
      await new Promise((resolve) => {
        child.stdout.on('data', (d) => {
          acked += d;
          if (acked.split('\n').length > 300 + 100 * round) resolve();
        });
      });
      child.kill('SIGKILL');
      const r = await waitExit(child);
      assert.equal(r.signal, 'SIGKILL');
      acked += r.stdout;
      const ids = acked.split('\n').filter(Boolean).map(Number);
      const events = checkLog(root, { allow_torn_tail: true });
      const onDisk = new Set(events.filter((e) => e.run_id === 'k').map((e) => `${e.writer}/${e.data.trial_id}`));
      const writers = new Set(events.map((e) => e.writer));
      const last = [...writers].pop();
      const lost = ids.filter((id) => !onDisk.has(`${last}/${id}`));
      assert.deepEqual(lost, [], `round ${round}: acknowledged events missing`);
    }
  });
}

const TERM_ME = `
const [root, how] = process.argv.slice(1);
const em = lx.getEventEmitter(root, { durability: 'group', commitIntervalMs: 60000 });
const fs = require('node:fs');
for (let i = 0; i < 500; i++) em.emitTrialRecorded('t', i, {}, { x: i });
fs.writeSync(1, 'emitted\\n');
if (how === 'exit') process.exit(3);
setInterval(() => {}, 1000); // wait for the signal
`;

for (const how of ['SIGTERM', 'SIGINT', 'exit']) {
  test(`${how}: queued group events are flushed${how === 'exit' ? ' by process.exit()' : ', the signal still ends the process'}`, async () => {
    const root = tmpRoot(`term-${how}`);
    const child = spawnNode(TERM_ME, [root, how]);
    const done = waitExit(child);
    if (how !== 'exit') {
      await new Promise((resolve) => child.stdout.once('data', resolve));
      child.kill(how);
    }
    const r = await done;
    if (how === 'exit') assert.equal(r.code, 3);
    else assert.equal(r.signal, how, `exit ${r.code} ${r.stderr}`);
    // A 60 s commit interval: only the exit/signal flush can have written these.
    const events = checkLog(root);
    assert.deepEqual(events.map((e) => e.data.trial_id), [...Array(500).keys()]);
  });
}

const PARENT_CHILD = `
const [root, role] = process.argv.slice(1);
const em = lx.getEventEmitter(root, { durability: 'fsync' });
(async () => {
  await em.emitRunStarted(role);
  if (role === 'parent') {
    const { spawnSync } = require('node:child_process');
    const r = spawnSync(process.execPath, process.execArgv.concat(['--', root, 'child']), { stdio: 'inherit' });
    if (r.status !== 0) process.exit(1);
    await em.emitRunHeartbeat(role); // the parent's writer is unaffected by the child's
  }
  await em.close();
})();
`;

test('a child process opens its own writer (its own part, its own seqs)', async () => {
  const root = tmpRoot('child');
  const r = await waitExit(spawnNode(PARENT_CHILD, [root, 'parent']));
  assert.equal(r.code, 0, r.stderr);
  const events = checkLog(root);
  const rows = events.map((e) => [e.run_id, e.event_type, e.seq]);
  rows.sort();
  assert.deepEqual(rows, [['child', 'run.started', 1], ['parent', 'run.heartbeat', 2], ['parent', 'run.started', 1]]);
  const byRole = new Map(events.map((e) => [e.run_id, e]));
  assert.notEqual(byRole.get('child').writer, byRole.get('parent').writer);
  assert.notEqual(byRole.get('child')._file, byRole.get('parent')._file, 'the parent holds its part');
});
