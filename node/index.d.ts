// Typings of the ledgerx Node emitter (hand-written; checked by `tsc` in `make test-node`).

/** Where an event was written: part file relative to `events/`, and the line's byte offset. */
export interface Position {
  file: string;
  offset: number;
}

export type Durability = 'group' | 'fsync' | 'os';

export interface EmitterOptions {
  /** 'group' (default): durable at the next group commit; 'fsync': fdatasync per event;
   *  'os': written, fsync left to the OS. */
  durability?: Durability;
  /** Group commit interval in ms (default 2). */
  commitIntervalMs?: number;
  /** A part file is full at this size (default 100 MB). */
  maxPartBytes?: number;
  /** A single event larger than this is rejected (default 16 MiB). */
  maxEventBytes?: number;
}

/** JSON values the emitter accepts (Dates become RFC 3339 UTC strings; BigInt in the i64 range). */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | bigint
  | Date
  | JsonValue[]
  | { [key: string]: JsonValue | undefined };
export type JsonObject = { [key: string]: JsonValue | undefined };

export interface EmitOptions {
  runId?: string | null;
  schemaVersion?: number;
}

export interface ArtifactInfo extends JsonObject {
  name: string;
  path: string;
  format: string;
  bytes: number;
  sha256: string;
  rows?: number;
}

export class LedgerError extends Error {}
/** An invalid event: the message names type, version, path and rule. Nothing was written. */
export class SchemaError extends LedgerError {
  name: 'SchemaError';
  /** The event's type and schema version, when known. */
  eventType: string | null;
  version: number | null;
  /** Where in the document the first violation is (`data.metrics.sharpe`), when known. */
  path: string | null;
}
/** A bad option (durability, commit interval, sizes); raised before anything is written. */
export class ConfigError extends LedgerError {
  name: 'ConfigError';
}
/** A disk fault: `code` is the errno name ('ENOSPC', 'EIO', ...), `path` the file concerned. */
export class LedgerIOError extends LedgerError {
  code: string;
  errno: number;
  path: string;
}
/** The emitter was closed. */
export class ClosedError extends LedgerIOError {}

export class EventEmitter {
  readonly root: string;
  readonly durability: Durability;
  readonly writerId: string;
  emit(eventType: string, data: JsonObject, options?: EmitOptions): Promise<Position>;
  emitRunCreated(
    runId: string,
    runKind: string,
    config: JsonObject,
    dataFingerprint: string,
    tags?: JsonObject,
  ): Promise<Position>;
  emitRunStarted(runId: string, info?: JsonObject): Promise<Position>;
  emitRunCompleted(runId: string, summary: JsonObject, artifactPaths: string[]): Promise<Position>;
  emitRunFailed(runId: string, error: string | Error, traceback?: string): Promise<Position>;
  emitRunHeartbeat(runId: string): Promise<Position>;
  emitPhaseStarted(runId: string, phase: string, phaseIndex: number): Promise<Position>;
  emitPhaseCompleted(
    runId: string,
    phase: string,
    durationMs: number,
    outputSummary?: JsonObject,
  ): Promise<Position>;
  emitTrialRecorded(
    runId: string,
    trialId: string | number,
    params: JsonObject,
    metrics: { [name: string]: number },
  ): Promise<Position>;
  emitBaselineCompleted(
    runId: string,
    name: string,
    metrics: { [name: string]: number },
  ): Promise<Position>;
  emitArtifactCreated(runId: string, artifact: ArtifactInfo): Promise<Position>;
  emitAlert(alertId: string, source: string, severity: string, payload: JsonObject): Promise<Position>;
  /** Resolves once everything emitted so far is durable. */
  flush(): Promise<void>;
  /** Flush and release the part file; later emits reject with ClosedError. */
  close(): Promise<void>;
  /** Re-read events/_schema.json now (it is also re-read when it changes). */
  reloadSchemas(): void;
}

/** The process's emitter for `root` (default `$LEDGERX_ROOT`, else `data/ledger`). */
export function getEventEmitter(root?: string, options?: EmitterOptions): EventEmitter;
