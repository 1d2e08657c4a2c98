'use strict';
// ledgerx for Node: the Promise API over the native addon (the same Rust core as the Python
// package). Validation, serialization and ordering happen synchronously in each emit call; the
// returned Promise settles when the event is durable for the emitter's mode.

const path = require('node:path');
const os = require('node:os');

function loadNative() {
  const name = `ledgerx.${process.platform}-${process.arch}-gnu.node`;
  try {
    return require(path.join(__dirname, name));
  } catch (e) {
    e.message = `ledgerx: cannot load the native addon ${name} (run \`make node\`): ${e.message}`;
    throw e;
  }
}

const native = loadNative();
const MARK = '\u0001ledgerx:';
const ERRNO_NAMES = Object.fromEntries(
  Object.entries(os.constants.errno).map(([name, n]) => [n, name]),
);

/** Base class of every error this package raises. */
class LedgerError extends Error {
  constructor(message) {
    super(message);
    this.name = 'LedgerError';
  }
}

/**
 * An invalid event (unknown type, schema violation, not I-JSON, too large, bad run id).
 * `eventType` and `version` name its schema when known; `path` is where in the document the
 * first violation is (`data.metrics.sharpe`), when there is one.
 */
class SchemaError extends LedgerError {
  constructor(message, eventType = null, version = null, path = null) {
    super(message);
    this.name = 'SchemaError';
    this.eventType = eventType;
    this.version = version;
    this.path = path;
  }
}

/** A bad option (durability, commit interval, sizes); raised before anything is written. */
class ConfigError extends LedgerError {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A disk fault: `code` is the errno name (e.g. 'ENOSPC'), `errno` its number, `path` the file. */
class LedgerIOError extends LedgerError {
  constructor(message, errno, filePath) {
    super(message);
    this.name = 'LedgerIOError';
    this.errno = errno;
    this.code = ERRNO_NAMES[errno] || 'EIO';
    this.path = filePath;
  }
}

/** The emitter was closed. */
class ClosedError extends LedgerIOError {
  constructor(message) {
    super(message, os.constants.errno.EBADF, '');
    this.name = 'ClosedError';
  }
}

/** Turn a native error (marked JSON message) into the typed error; others pass through. */
function typed(err) {
  const msg = err && typeof err.message === 'string' ? err.message : '';
  if (!msg.startsWith(MARK)) return err;
  const body = JSON.parse(msg.slice(MARK.length));
  if (body.kind === 'schema') return new SchemaError(body.message, body.eventType, body.version, body.path);
  if (body.kind === 'config') return new ConfigError(body.message);
  if (body.kind === 'closed') return new ClosedError(body.message);
  return new LedgerIOError(body.message, body.errno, body.path);
}

function positionOf(p) {
  return { file: p.file, offset: p.offset };
}

// Promises are made here, with one shared executor (no closure per event); their resolvers wait
// in queues that the native side settles in bulk (group: "durable up to seq N"; fsync: one
// callback per event by token).
let lastResolve = null;
let lastReject = null;
function takeResolvers(resolve, reject) {
  lastResolve = resolve;
  lastReject = reject;
}

// fsync mode: token -> [resolve, reject, file, offset], settled when an fdatasync covering the
// event's line returned (the writer's fdatasync thread reports them in batches; the native
// serializer's path uses a pool task and a Promise of its own).
const syncs = new Map();
let nextToken = 1;
native.setOnSynced((token, failure) => {
  const s = syncs.get(token);
  if (s === undefined) return;
  syncs.delete(token);
  if (failure === null) s[0]({ file: s[2], offset: s[3] });
  else s[1](typed(new Error(failure)));
});

/** A rejected Promise to resolve others with (they reject with `err`); itself handled. */
function rejected(err) {
  const p = Promise.reject(err);
  p.catch(() => {});
  return p;
}

/** A fast-path SchemaError caused by a lone surrogate: the native serializer names its path. */
function isSurrogateError(e) {
  return e && typeof e.message === 'string' && e.message.startsWith(MARK) && e.message.includes('lone surrogate');
}

const DURABILITIES = ['group', 'fsync', 'os'];
const OBJECT_PROTO = Object.prototype;
const MAX_DEPTH = 128;
const MAX_HEADS = 1024;
/** The group-mode rings' first capacity (a power of two). */
const RING = 1024;

/** An array of `n` copies of `v`, made by appending: hole-free (packed elements, which
 *  `new Array(n).fill(v)` is not). */
function filled(n, v) {
  const a = [];
  for (let i = 0; i < n; i++) a.push(v);
  return a;
}

/**
 * True when `v` holds only what JSON.stringify writes faithfully: plain objects, arrays,
 * strings, finite numbers, booleans, null (and undefined object properties, which
 * both leave out). Anything else (NaN, Date, BigInt, Map, class instances, ...) takes the
 * native serializer, which converts it or names the offending path in a SchemaError. (A lone
 * surrogate, which JSON.stringify escapes as \udXXX, is refused by the native side, and the
 * call is then retried with the native serializer to name its path.)
 */
function plainJson(v, depth) {
  switch (typeof v) {
    case 'string':
      return true;
    case 'number':
      return Number.isFinite(v);
    case 'boolean':
      return true;
    case 'object': {
      if (v === null) return true;
      if (depth >= MAX_DEPTH) return false;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          if (v[i] === undefined || !plainJson(v[i], depth + 1)) return false;
        }
        return true;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== OBJECT_PROTO && proto !== null) return false;
      for (const k in v) {
        const x = v[k];
        if (x === undefined) continue;
        if (!plainJson(x, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

function isPlainObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && plainJson(v, 0);
}

function checkOptions(options) {
  const o = Object.assign(
    { durability: 'group', commitIntervalMs: 2, maxPartBytes: 100e6, maxEventBytes: 16 * 1024 * 1024 },
    options || {},
  );
  if (!DURABILITIES.includes(o.durability)) {
    throw new ConfigError(`durability must be 'fsync', 'group' or 'os', not ${JSON.stringify(o.durability)}`);
  }
  for (const k of ['commitIntervalMs', 'maxPartBytes', 'maxEventBytes']) {
    if (!Number.isInteger(o[k]) || o[k] < 1) {
      throw new ConfigError(`${k} must be a positive integer, not ${String(o[k])}`);
    }
  }
  return o;
}

class EventEmitter {
  constructor(root, options) {
    const o = checkOptions(options);
    this.root = root;
    this.durability = o.durability;
    try {
      this._w = new native.NativeWriter(root, o.durability, o.commitIntervalMs, o.maxPartBytes, o.maxEventBytes);
    } catch (e) {
      throw typed(e);
    }
    this.writerId = this._w.writerId;
    this._slot = this._w.slot;
    this._closed = false;
    this._seq = 0;
    this._file = '';
    // Group mode: the Promises waiting for their batch, seqs `_first` to `_last` (a successful
    // emit takes the next seq): resolvers and positions in rings indexed by `seq & _mask`
    // (parallel arrays, doubled when full, made small again once a burst has settled). The
    // rings live long (old space after two scavenges) and a settled entry lets go of its
    // resolver at once, so a scavenge copies only the Promises still pending (the event-loop
    // lag follows the scavenges' pauses). A failed batch resolves its Promises with one
    // rejected Promise, which rejects them all.
    this._first = 1;
    this._last = 0;
    this._reset();
    this._waiting = false;
    // eventType -> runId (or null) -> the native number for the pair (see headId).
    this._heads = new Map();
    this._headCount = 0;
    this._lastType = null;
    this._lastRun = null;
    this._lastId = 0;
  }

  /** The native number for (eventType, runId), asked for once per pair (throws on a bad run id). */
  _headId(eventType, runId) {
    if (eventType === this._lastType && runId === this._lastRun) return this._lastId;
    let byRun = this._heads.get(eventType);
    if (byRun === undefined) {
      byRun = new Map();
      this._heads.set(eventType, byRun);
    }
    let id = byRun.get(runId);
    if (id === undefined) {
      // Bounded: a process that makes many runs starts the table afresh now and then.
      const reset = this._headCount >= MAX_HEADS;
      if (reset) {
        this._heads.clear();
        this._heads.set(eventType, byRun);
        byRun.clear();
        this._headCount = 0;
      }
      id = native.headId(this._slot, eventType, runId, reset);
      byRun.set(runId, id);
      this._headCount += 1;
    }
    // The pair of the last call, asked again next (a run's trials): no map lookups.
    this._lastType = eventType;
    this._lastRun = runId;
    this._lastId = id;
    return id;
  }

  /** Emit one event of any registered type. Resolves to `{file, offset}` once durable. */
  emit(eventType, data, options) {
    const runId = options && options.runId != null ? options.runId : null;
    const version = options && options.schemaVersion != null ? options.schemaVersion : null;
    return this._emit(eventType, data, runId, version);
  }

  _emit(eventType, data, runId, version) {
    if (typeof eventType !== 'string') {
      return Promise.reject(new SchemaError(`event_type must be a string, not ${typeof eventType}`));
    }
    if (runId !== null && typeof runId !== 'string') {
      return Promise.reject(new SchemaError(`${eventType}: run_id must be a string, not ${typeof runId}`));
    }
    if (version !== null && !(Number.isInteger(version) && version >= 1)) {
      return Promise.reject(new SchemaError(`${eventType}: schemaVersion must be a positive integer`));
    }
    let json;
    try {
      json = isPlainObject(data) ? JSON.stringify(data) : null;
    } catch (e) {
      return Promise.reject(typed(e)); // a throwing getter or Proxy trap
    }
    if (json !== null) {
      let code;
      const token = nextToken;
      try {
        const head = version === null ? this._headId(eventType, runId) : eventType;
        code = this.durability === 'fsync'
          ? native.emitFsyncAt(this._slot, head, json, runId, version, token)
          : native.emitJsonAt(this._slot, head, json, runId, version);
      } catch (e) {
        if (!isSurrogateError(e)) return Promise.reject(typed(e));
        return this._emitValue(eventType, data, runId, version); // names the path
      }
      if (code < 0) {
        code = -code - 1;
        this._file = this._w.lastFile;
      }
      this._seq += 1; // a successful emit takes the next seq
      if (this.durability === 'group') return this._queue(code);
      if (this.durability === 'os') return Promise.resolve({ file: this._file, offset: code });
      nextToken = token + 1;
      const p = new Promise(takeResolvers);
      syncs.set(token, [lastResolve, lastReject, this._file, code]);
      return p;
    }
    return this._emitValue(eventType, data, runId, version);
  }

  /** Data that is not plain JSON: the native serializer converts it or names what is wrong. */
  _emitValue(eventType, data, runId, version) {
    try {
      if (this.durability === 'fsync') {
        return this._w.emitFsync(eventType, data, runId, version).then(positionOf, (e) => {
          throw typed(e);
        });
      }
      const p = this._w.emit(eventType, data, runId, version);
      this._seq = p.seq;
      this._file = p.file;
      if (this.durability === 'os') return Promise.resolve({ file: p.file, offset: p.offset });
      return this._queue(p.offset);
    } catch (e) {
      return Promise.reject(typed(e));
    }
  }

  /** Group mode: a Promise for the event just emitted (seq `_seq`), settled with its batch. */
  _queue(offset) {
    const p = new Promise(takeResolvers);
    const seq = this._seq;
    if (this._first > this._last) this._first = seq; // none pending: the ring starts here
    else if (seq - this._first > this._mask) this._grow();
    this._last = seq;
    const k = seq & this._mask;
    this._res[k] = lastResolve;
    this._files[k] = this._file;
    this._offsets[k] = offset;
    if (!this._waiting) this._wait();
    return p;
  }

  /** Double the rings (all full: `_mask + 1` pending). Each ring followed by a copy of itself
   *  (a native copy) holds every pending seq `s` at `s & newMask`, in one half or the other; the
   *  copies of the pending resolvers in the other half, a circular run of the old capacity
   *  from `(_first + cap) & newMask`, are dropped at once. */
  _grow() {
    const cap = this._mask + 1;
    this._res = this._res.concat(this._res);
    this._files = this._files.concat(this._files);
    this._offsets = this._offsets.concat(this._offsets);
    this._mask = 2 * cap - 1;
    const from = (this._first + cap) & this._mask;
    this._res.fill(undefined, from, Math.min(from + cap, 2 * cap));
    if (from + cap > 2 * cap) this._res.fill(undefined, 0, from + cap - 2 * cap);
  }

  /** Wait (on the thread pool) for the flusher, then settle every promise it covered. */
  _wait() {
    this._waiting = true;
    this._w.waitDone(this._first - 1, 1000).then(
      (progress) => {
        this._waiting = false;
        this._settle(progress);
        if (this._first <= this._last) this._wait();
      },
      (e) => {
        this._waiting = false;
        this._settleAll(typed(e));
      },
    );
  }

  _settle(progress) {
    const failure = progress.failure ? rejected(typed(new Error(progress.failure))) : null;
    const last = Math.min(this._last, progress.doneSeq);
    const mask = this._mask;
    let s = this._first;
    for (; s <= last; s++) {
      const k = s & mask;
      const resolve = this._res[k];
      if (resolve === undefined) continue; // a seq this emitter did not queue
      this._res[k] = undefined;
      if (failure && s <= progress.failedThrough) resolve(failure);
      else resolve({ file: this._files[k], offset: this._offsets[k] });
    }
    this._first = s;
    if (progress.closed && s <= this._last) {
      this._settleAll(new ClosedError('ledger closed before the event was made durable'));
    } else if (s > this._last && this._mask >= 4 * RING) {
      this._reset(); // a burst's rings are not kept once it is settled
    }
  }

  /** Fresh rings of the first capacity (none pending). */
  _reset() {
    this._mask = RING - 1;
    this._res = filled(RING, undefined);
    this._files = filled(RING, '');
    this._offsets = filled(RING, 0);
  }

  _settleAll(err) {
    const failure = rejected(err);
    for (let s = this._first; s <= this._last; s++) {
      const k = s & this._mask;
      const resolve = this._res[k];
      this._res[k] = undefined;
      if (resolve !== undefined) resolve(failure);
    }
    this._first = this._last + 1;
    if (this._mask >= 4 * RING) this._reset();
  }

  /** Resolves once everything emitted so far is durable. */
  flush() {
    return this._w.flush().catch((e) => {
      throw typed(e);
    });
  }

  /** Flush, then release the part file; later emits reject with ClosedError. Idempotent. */
  close() {
    if (!this._closed) {
      this._closed = true;
      forget(this);
    }
    return this._w.close().catch((e) => {
      throw typed(e);
    });
  }

  /** Blocking flush (exit and signal handlers). */
  _flushSync(close) {
    try {
      this._w.flushSync(close);
    } catch (e) {
      process.emitWarning(`ledgerx: flush at exit failed: ${typed(e).message}`);
    }
  }

  /** Re-read events/_schema.json now (it is also re-read when it changes). */
  reloadSchemas() {
    try {
      this._w.reloadSchemas();
    } catch (e) {
      throw typed(e);
    }
  }

  // The seed's names: one method per built-in event type.
  emitRunCreated(runId, runKind, config, dataFingerprint, tags) {
    const data = { run_kind: runKind, config, data_fingerprint: dataFingerprint };
    if (tags !== undefined) data.tags = tags;
    return this._emit('run.created', data, runId, null);
  }

  emitRunStarted(runId, info) {
    const data = Object.assign({ host: os.hostname(), pid: process.pid }, info || {});
    return this._emit('run.started', data, runId, null);
  }

  emitRunCompleted(runId, summary, artifactPaths) {
    return this._emit('run.completed', { summary, artifact_paths: artifactPaths }, runId, null);
  }

  emitRunFailed(runId, error, traceback) {
    const data = { error: error instanceof Error ? `${error.name}: ${error.message}` : error };
    if (traceback !== undefined) data.traceback = traceback;
    else if (error instanceof Error && error.stack) data.traceback = error.stack;
    return this._emit('run.failed', data, runId, null);
  }

  emitRunHeartbeat(runId) {
    return this._emit('run.heartbeat', {}, runId, null);
  }

  emitPhaseStarted(runId, phase, phaseIndex) {
    return this._emit('phase.started', { phase, phase_index: phaseIndex }, runId, null);
  }

  emitPhaseCompleted(runId, phase, durationMs, outputSummary) {
    const data = { phase, duration_ms: durationMs };
    if (outputSummary !== undefined) data.output_summary = outputSummary;
    return this._emit('phase.completed', data, runId, null);
  }

  emitTrialRecorded(runId, trialId, params, metrics) {
    return this._emit('trial.recorded', { trial_id: trialId, params, metrics }, runId, null);
  }

  emitBaselineCompleted(runId, name, metrics) {
    return this._emit('baseline.completed', { baseline: name, metrics }, runId, null);
  }

  emitArtifactCreated(runId, artifact) {
    return this._emit('artifact.created', artifact, runId, null);
  }

  emitAlert(alertId, source, severity, payload) {
    return this._emit('alert.ingested', { alert_id: alertId, source, severity, payload }, null, null);
  }
}

// One emitter per process per root; flushed at exit and on SIGTERM/SIGINT.
const emitters = new Map();

function forget(em) {
  if (emitters.get(em._key) === em) emitters.delete(em._key);
}

/**
 * The process's emitter for `root` (default `$LEDGERX_ROOT`, else `data/ledger`). Options apply
 * when it is first opened; asking again with other options for an open root is an error.
 */
function getEventEmitter(root, options) {
  const r = path.resolve(root || process.env.LEDGERX_ROOT || path.join('data', 'ledger'));
  const existing = emitters.get(r);
  if (existing) {
    const o = checkOptions(options);
    if (options && options.durability && o.durability !== existing.durability) {
      throw new ConfigError(`${r} is already open with durability '${existing.durability}'`);
    }
    return existing;
  }
  const em = new EventEmitter(r, options);
  em._key = r;
  emitters.set(r, em);
  installExitHooks();
  return em;
}

let hooked = false;

function flushAll(close) {
  for (const em of emitters.values()) em._flushSync(close);
}

function onSignal(signal) {
  flushAll(true);
  emitters.clear();
  process.removeListener(signal, onSignal);
  // Re-raise: with no other listener left, Node's default action ends the process by signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installExitHooks() {
  if (hooked) return;
  hooked = true;
  process.on('beforeExit', () => flushAll(false));
  process.on('exit', () => flushAll(true));
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

module.exports = {
  getEventEmitter,
  EventEmitter,
  LedgerError,
  SchemaError,
  ConfigError,
  LedgerIOError,
  ClosedError,
};
