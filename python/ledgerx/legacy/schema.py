"""The legacy DuckDB layout (docs/legacy.md) and the deterministic event ids of migrated rows.

`LEGACY_TABLES` lists the columns the old code wrote; the reader accepts the types listed in
docs/legacy.md (TIMESTAMP taken as UTC, or TIMESTAMPTZ; JSON or VARCHAR holding JSON).
`LEGACY_DDL` is the canonical layout, which the legacy-shaped projection publishes.
"""

from __future__ import annotations

import hashlib

# (schema, table) -> columns, in the legacy order.
LEGACY_TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "runs": (
        "optimizer",
        "runs_d",
        (
            "run_id",
            "run_kind",
            "config",
            "data_fingerprint",
            "status",
            "created_at",
            "started_at",
            "completed_at",
            "summary",
        ),
    ),
    "phases": (
        "optimizer",
        "phases_d",
        (
            "run_id",
            "phase",
            "phase_index",
            "started_at",
            "completed_at",
            "duration_ms",
            "output_summary",
        ),
    ),
    "trials": (
        "optimizer",
        "trials_f",
        ("run_id", "trial_id", "params", "metrics", "recorded_at"),
    ),
    "baselines": ("baseline", "results", ("run_id", "baseline", "metrics", "completed_at")),
    "alerts": ("canon", "alerts_raw", ("alert_id", "source", "severity", "payload", "ts")),
}

# The canonical types; `{db}` is the database alias to create the tables in.
LEGACY_DDL = """
CREATE SCHEMA IF NOT EXISTS {db}.optimizer;
CREATE SCHEMA IF NOT EXISTS {db}.baseline;
CREATE SCHEMA IF NOT EXISTS {db}.canon;
CREATE TABLE {db}.optimizer.runs_d (
    run_id VARCHAR PRIMARY KEY,
    run_kind VARCHAR,
    config JSON,
    data_fingerprint VARCHAR,
    status VARCHAR,
    created_at TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    summary JSON
);
CREATE TABLE {db}.optimizer.phases_d (
    run_id VARCHAR,
    phase VARCHAR,
    phase_index INTEGER,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    duration_ms DOUBLE,
    output_summary JSON
);
CREATE TABLE {db}.optimizer.trials_f (
    run_id VARCHAR,
    trial_id BIGINT,
    params JSON,
    metrics JSON,
    recorded_at TIMESTAMP
);
CREATE TABLE {db}.baseline.results (
    run_id VARCHAR,
    baseline VARCHAR,
    metrics JSON,
    completed_at TIMESTAMP
);
CREATE TABLE {db}.canon.alerts_raw (
    alert_id VARCHAR,
    source VARCHAR,
    severity VARCHAR,
    payload JSON,
    ts TIMESTAMPTZ
);
"""

KEY_SEP = "\x1f"

# The same construction in SQL (a macro, see source.py) and in Python: the 48-bit millisecond
# time of the row, version 7, then 74 bits of sha256(key) with the RFC 9562 variant bits.
UUID7_MACROS = """
CREATE OR REPLACE TEMP MACRO lx_uuid7_hex(m, h) AS
    substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-7' || substr(h, 1, 3) || '-'
    || substr('89ab89ab89ab89ab', strpos('0123456789abcdef', substr(h, 4, 1)), 1)
    || substr(h, 5, 3) || '-' || substr(h, 8, 12);
CREATE OR REPLACE TEMP MACRO lx_uuid7(t, k) AS
    lx_uuid7_hex(printf('%012x', greatest(epoch_us(t), 0) // 1000), sha256(k));
"""


def legacy_event_id(ts_us: int, *key: str) -> str:
    """Deterministic UUIDv7 of a migrated legacy row: time from the row (`ts_us`, microseconds
    since the epoch, UTC), the other bits from sha256 of its key parts joined by U+001F."""
    h = hashlib.sha256(KEY_SEP.join(key).encode()).hexdigest()
    m = f"{max(ts_us, 0) // 1000:012x}"
    variant = "89ab"[int(h[3], 16) & 3]
    return f"{m[:8]}-{m[8:]}-7{h[:3]}-{variant}{h[4:7]}-{h[7:19]}"
