//! The built-in event types (docs/schema.md), version 1 each. Extra properties in `data` are allowed.
//! The Python registry seeds `events/_schema.json` from this text on first open.

pub const BUILTIN_REGISTRY: &str = r#"{
  "ledgerx_registry": 1,
  "types": {
    "run.created": {"1": {"type": "object", "required": ["run_kind", "config", "data_fingerprint"],
      "properties": {"run_kind": {"type": "string", "minLength": 1}, "config": {"type": "object"},
                     "data_fingerprint": {"type": "string"}, "tags": {"type": "object"}}}},
    "run.started": {"1": {"type": "object",
      "properties": {"host": {"type": "string"}, "pid": {"type": "integer", "minimum": 0}}}},
    "run.heartbeat": {"1": {"type": "object"}},
    "run.completed": {"1": {"type": "object", "required": ["summary", "artifact_paths"],
      "properties": {"summary": {"type": "object"},
                     "artifact_paths": {"type": "array", "items": {"type": "string"}}}}},
    "run.failed": {"1": {"type": "object", "required": ["error"],
      "properties": {"error": {"type": "string"}, "traceback": {"type": ["string", "null"]}}}},
    "phase.started": {"1": {"type": "object", "required": ["phase", "phase_index"],
      "properties": {"phase": {"type": "string", "minLength": 1},
                     "phase_index": {"type": "integer", "minimum": 0}}}},
    "phase.completed": {"1": {"type": "object", "required": ["phase", "duration_ms"],
      "properties": {"phase": {"type": "string", "minLength": 1},
                     "duration_ms": {"type": "number", "minimum": 0},
                     "output_summary": {"type": "object"}}}},
    "trial.recorded": {"1": {"type": "object", "required": ["trial_id", "params", "metrics"],
      "properties": {"trial_id": {"type": ["integer", "string"]}, "params": {"type": "object"},
                     "metrics": {"type": "object", "additionalProperties": {"type": "number"}}}}},
    "baseline.completed": {"1": {"type": "object", "required": ["baseline", "metrics"],
      "properties": {"baseline": {"type": "string", "minLength": 1},
                     "metrics": {"type": "object", "additionalProperties": {"type": "number"}}}}},
    "artifact.created": {"1": {"type": "object",
      "required": ["name", "path", "format", "bytes", "sha256"],
      "properties": {"name": {"type": "string", "minLength": 1}, "path": {"type": "string", "minLength": 1},
                     "format": {"type": "string"}, "bytes": {"type": "integer", "minimum": 0},
                     "sha256": {"type": "string", "minLength": 64, "maxLength": 64},
                     "rows": {"type": ["integer", "null"], "minimum": 0}}}},
    "alert.ingested": {"1": {"type": "object", "required": ["alert_id", "source", "severity", "payload"],
      "properties": {"alert_id": {"type": "string", "minLength": 1}, "source": {"type": "string"},
                     "severity": {"type": "string"}, "payload": {"type": "object"}}}}
  }
}"#;
