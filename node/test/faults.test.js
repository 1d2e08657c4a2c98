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
      // strace counts calls per thread: one pool thread makes the 2nd fdatasync the 2nd event's.
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
