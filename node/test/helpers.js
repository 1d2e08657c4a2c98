'use strict';
// Shared by the Node tests: temp roots, the repo's Python (for the independent line checker
// tests/logcheck.py and the CLI), and child processes.

const { spawnSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');
const PYTHON = path.resolve(process.env.LEDGERX_PYTHON || path.join(REPO, '.venv', 'bin', 'python'));
const ADDON = path.join(REPO, 'node');

function tmpRoot(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ledgerx-node-${name}-`));
}

/** Run Python code with tests/ on the path; returns stdout parsed as JSON. */
function py(code, ...args) {
  const r = spawnSync(PYTHON, ['-c', code, ...args], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: path.join(REPO, 'tests') },
    maxBuffer: 1 << 30,
  });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const CHECK = `
import json, sys
from pathlib import Path
from logcheck import check_log
kw = json.loads(sys.argv[2])
r = check_log(Path(sys.argv[1]), **kw)
print(json.dumps(r.events))
`;

/** Every line under root checked by tests/logcheck.py (the independent reader); its events. */
function checkLog(root, opts = {}) {
  return py(CHECK, root, JSON.stringify(opts));
}

/** Run a JS snippet in a fresh node process (the addon loaded by path). */
function nodeScript(code) {
  return `const lx = require(${JSON.stringify(ADDON)});\n${code}`;
}

function spawnNode(code, args, opts = {}) {
  return spawn(process.execPath, ['-e', nodeScript(code), '--', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...opts,
  });
}

function runNode(code, args, opts = {}) {
  const r = spawnSync(process.execPath, ['-e', nodeScript(code), '--', ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    ...opts,
  });
  return r;
}

/** Resolve when the child exits: {code, signal, stdout, stderr}. */
function waitExit(child) {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The bytes of every part file under root (to prove a rejected emit wrote nothing). */
function logBytes(root) {
  const ev = path.join(root, 'events');
  let total = '';
  if (!fs.existsSync(ev)) return total;
  for (const day of fs.readdirSync(ev).filter((d) => d.startsWith('day=')).sort()) {
    for (const f of fs.readdirSync(path.join(ev, day)).sort()) {
      total += fs.readFileSync(path.join(ev, day, f), 'utf8');
    }
  }
  return total;
}

module.exports = { REPO, PYTHON, tmpRoot, py, checkLog, spawnNode, runNode, waitExit, logBytes };
