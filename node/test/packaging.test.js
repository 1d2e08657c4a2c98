'use strict';
// `npm pack` gives a tarball that installs offline (no registry, no dependencies) with the
// prebuilt binary, and the installed package writes a valid log.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { tmpRoot, checkLog, REPO } = require('./helpers');

function npm(args, cwd, cache) {
  const r = spawnSync('npm', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_cache: cache, npm_config_update_notifier: 'false' },
  });
  assert.equal(r.status, 0, `npm ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('npm pack, then npm install --offline of the tarball works with no registry', () => {
  const dir = tmpRoot('pack');
  const cache = path.join(dir, 'npm-cache');
  npm(['pack', '--pack-destination', dir], path.join(REPO, 'node'), cache);
  const tgz = fs.readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.equal(tgz, 'ledgerx-0.1.0.tgz');
  const app = path.join(dir, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
  npm(['install', '--offline', '--no-audit', '--no-fund', path.join(dir, tgz)], app, cache);
  const installed = fs.readdirSync(path.join(app, 'node_modules', 'ledgerx')).sort();
  assert.deepEqual(installed, ['index.d.ts', 'index.js', 'ledgerx.linux-x64-gnu.node', 'package.json']);
  const root = path.join(dir, 'root');
  const r = spawnSync(process.execPath, ['-e',
    "require('ledgerx').getEventEmitter(process.argv[1]).emitRunStarted('pkg').then((p) => console.log(JSON.stringify(p)))",
    root], { cwd: app, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { file: checkLog(root)[0]._file, offset: 0 });
});
