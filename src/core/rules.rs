//! The rules an event's envelope must follow beyond its JSON shape (run ids, artifact paths,
//! migration overrides, run scope): one owner, used by the writer before a line is built and by
//! the scanner on every line it reads.

use super::error::{Error, Result};
use super::ids;
use super::writer::EventHead;

/// The bytes a run id may hold: ASCII letters and digits, `.`, `_` and `-`.
const RUN_ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        c += 1;
    }
    t
};

/// Whether `b` is a valid run id (the scanner asks with a line's bytes, before any string).
/// One table lookup per byte, without an early exit (run ids are short; every emit asks).
pub(crate) fn valid_run_id(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().fold(true, |ok, &c| ok & RUN_ID_BYTE[c as usize])
}

/// Checked before anything is built: run ids end up in paths, so they are strict.
pub fn check_run_id(id: &str) -> Result<()> {
    if valid_run_id(id.as_bytes()) {
        Ok(())
    } else {
        Err(Error::schema(format!(
            "invalid run_id {id:?}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}"
        )))
    }
}

/// Artifact paths are relative to the ledger root and stay inside it: not absolute, no `..`
/// component, no NUL. Checked for `artifact.created` (`path`) and `run.completed`
/// (`artifact_paths`) by the writer and, for hand-written lines, by the scanner.
pub fn check_artifact_paths(event_type: &str, data: &[u8]) -> Result<()> {
    let key = match event_type {
        "artifact.created" => "path",
        "run.completed" => "artifact_paths",
        _ => return Ok(()),
    };
    // The shape itself is the schema's business; only the strings found are checked here.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Ok(());
    };
    let check = |p: &str| {
        let inside = !p.is_empty()
            && !p.starts_with('/')
            && !p.contains('\0')
            && p.split('/').all(|c| c != "..");
        if inside {
            Ok(())
        } else {
            Err(Error::schema(format!(
                "{event_type}: artifact path {p:?} must be relative to the ledger root, without '..'"
            )))
        }
    };
    match v.get(key) {
        Some(serde_json::Value::String(p)) => check(p),
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|x| x.as_str()).try_for_each(check)
        }
        _ => Ok(()),
    }
}

/// The latest timestamp a line can carry: 9999-12-31T23:59:59.999999Z.
pub(crate) const MAX_TS_US: i64 = 253_402_300_799_999_999;

/// The migration overrides are checked like run ids: the event id must be a canonical UUID
/// (8-4-4-4-12 hex digits) and the timestamp after the epoch (0 stands for a missing time)
/// and within the line format's four-digit years.
pub fn check_overrides(head: &EventHead<'_>) -> Result<()> {
    if let Some(id) = head.event_id {
        if !ids::is_uuid(id.as_bytes()) {
            return Err(Error::schema(format!("event_id {id:?} is not a UUID")));
        }
    }
    match head.ts_us {
        Some(t) if !(1..=MAX_TS_US).contains(&t) => Err(Error::schema(format!(
            "ts_us {t} is outside 1970-01-01T00:00:00Z (exclusive) .. 9999-12-31"
        ))),
        _ => Ok(()),
    }
}

/// Event types that belong to a run and so need a run id (`alert.ingested` and user types
/// do not): `run.*`, `phase.*`, `trial.recorded`, `baseline.completed`, `artifact.created`.
pub fn is_run_scoped(event_type: &str) -> bool {
    event_type.starts_with("run.")
        || event_type.starts_with("phase.")
        || matches!(
            event_type,
            "trial.recorded" | "baseline.completed" | "artifact.created"
        )
}

/// The one check of an event's run id: well-formed when given, present when the type is
/// run-scoped.
pub fn check_run_scope(event_type: &str, run_id: Option<&str>) -> Result<()> {
    match run_id {
        Some(r) => check_run_id(r),
        None if is_run_scoped(event_type) => Err(Error::schema(format!(
            "{event_type} belongs to a run: pass run_id=... (or emit it through `with ledger.run(...) as run`)"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_run_id;

    /// The rule as the error message states it, byte by byte.
    fn reference(b: &[u8]) -> bool {
        !b.is_empty()
            && b.len() <= 128
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    }

    #[test]
    fn every_byte_in_every_position_is_judged_by_the_rule() {
        for c in 0..=255u8 {
            for id in [
                vec![c],
                vec![b'a', c],
                vec![b'a', c, b'z'],
                [b'r'; 127].to_vec(),
            ] {
                let mut id = id;
                if id.len() == 127 {
                    id.push(c);
                }
                assert_eq!(valid_run_id(&id), reference(&id), "{id:?}");
            }
        }
        assert!(valid_run_id(&[b'a'; 128]) && !valid_run_id(&[b'a'; 129]));
        assert!(!valid_run_id(b"") && !valid_run_id(b"-a") && valid_run_id(b"run-1.a_b"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_judged_by_the_rule(
            id in proptest::collection::vec(proptest::sample::select(
                b"aZ09._- /\x00\x7f\xc3\xa9".to_vec()), 0..140)
        ) {
            proptest::prop_assert_eq!(valid_run_id(&id), reference(&id));
        }
    }
}
