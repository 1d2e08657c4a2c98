//! `events/_schema.json` as a writer sees it: loaded once, re-read when its mtime changes (looked
//! at most once a second) or when an event type is unknown, so a type registered by another
//! process (in any language) validates here too. Both bindings' writers use this.

use super::error::{Error, Result};
use super::json::Tape;
use super::schema::{Registry, Schema, ShapeBuf, ShapeMemo, Violation};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// One version's schema together with the registry that holds it, kept alive by this value. A
/// binding can keep it between emits while `SchemaFile::is_current` says its registry is still
/// the one in use (a re-read makes a new registry; none is changed once shared).
/// Cloning is one reference count (a binding clones its kept lookup on every emit).
#[derive(Clone)]
pub struct SchemaRef {
    pub version: u32,
    found: Arc<Found>,
}

/// What a lookup found, shared by the clones of one `SchemaRef`.
struct Found {
    /// Keeps `schema`'s registry alive (never read).
    _reg: Arc<Registry>,
    /// Which re-read of the file `reg` is (`SchemaFile::still_current`).
    generation: u64,
    schema: *const Schema,
    /// A binding's kept lookup validates by shape.
    memo: ShapeMemo,
}

// SAFETY: `schema` points into `*_reg`, which this value holds a reference to and which is never
// mutated once shared, so using it from any thread is as safe as using `reg` itself.
unsafe impl Send for Found {}
// SAFETY: as for `Send`: shared reads of an immutable registry kept alive by `_reg`.
unsafe impl Sync for Found {}

impl SchemaRef {
    pub fn schema(&self) -> &Schema {
        // SAFETY: see the `Send` impl of `Found`: `_reg` keeps the pointee alive and unchanged.
        unsafe { &*self.found.schema }
    }

    /// Validate the value on `tape` (written as `src`), by shape where the schema allows
    /// (`ShapeMemo`): the emit path's validation.
    pub fn validate_tape(&self, src: &[u8], tape: &Tape) -> std::result::Result<(), Violation> {
        self.found.memo.validate(self.schema(), src, tape)
    }

    /// Whether a serializer should record a shape (`ShapeBuf`, for `validate_shape`) rather
    /// than a token tape: the schema's verdicts depend on shapes only.
    pub fn by_shape(&self) -> bool {
        self.found.memo.by_shape()
    }

    /// Validate the JSON text `src` whose shape a serializer recorded (`ShapeMemo`).
    pub fn validate_shape(
        &self,
        shape: &ShapeBuf,
        src: &[u8],
    ) -> std::result::Result<(), Violation> {
        self.found.memo.validate_shape(self.schema(), shape, src)
    }
}

/// How often a lookup looks at `_schema.json` for registrations by other processes.
const CHECK_MS: i64 = 1000;

struct Loaded {
    registry: Arc<Registry>,
    mtime: Option<SystemTime>,
    /// How many re-reads came before this one.
    generation: u64,
}

pub struct SchemaFile {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    next_check_ms: AtomicI64,
    /// `loaded.generation`, readable without the lock (`still_current` on every emit).
    generation: AtomicU64,
    /// Why the last periodic re-read failed (None once one succeeds): validation goes on with
    /// the last good registry, and the failure is reported, never swallowed.
    last_error: RwLock<Option<String>>,
}

fn mtime_of(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn now_ms() -> i64 {
    // Coarse: the re-read check runs on every emit and needs only about a second's precision.
    super::clock::coarse_now_ms()
}

/// The registry in `path`, or the built-in one when the file does not exist yet.
fn load(path: &Path) -> Result<Registry> {
    match std::fs::read_to_string(path) {
        Ok(text) => Registry::from_json(&text)
            .map_err(|e| Error::schema(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Registry::from_json(super::builtin::BUILTIN_REGISTRY).map_err(Error::schema)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

impl SchemaFile {
    /// Load `<events>/_schema.json`.
    pub fn open(events: &Path) -> Result<SchemaFile> {
        let path = events.join("_schema.json");
        let mtime = mtime_of(&path);
        let registry = Arc::new(load(&path)?);
        Ok(SchemaFile {
            path,
            loaded: RwLock::new(Loaded {
                registry,
                mtime,
                generation: 0,
            }),
            next_check_ms: AtomicI64::new(now_ms() + CHECK_MS),
            generation: AtomicU64::new(0),
            last_error: RwLock::new(None),
        })
    }

    /// The registry in use and its generation, read together.
    fn current(&self) -> (Arc<Registry>, u64) {
        let r = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        (Arc::clone(&r.registry), r.generation)
    }

    /// The registry to validate `event_type` with: re-read when the file changed, and once
    /// more when the type is unknown (maybe registered elsewhere since the last look).
    pub fn for_type(&self, event_type: &str) -> Result<Arc<Registry>> {
        Ok(self.for_type_with_generation(event_type)?.0)
    }

    fn for_type_with_generation(&self, event_type: &str) -> Result<(Arc<Registry>, u64)> {
        self.refresh();
        let cur = self.current();
        if cur.0.contains(event_type) {
            return Ok(cur);
        }
        self.reload()?;
        Ok(self.current())
    }

    /// The periodic look at the file (at most once a second): re-read it when its mtime changed.
    pub fn refresh(&self) {
        let now = now_ms();
        if now >= self.next_check_ms.load(Ordering::Relaxed) {
            self.next_check_ms.store(now + CHECK_MS, Ordering::Relaxed);
            let m = mtime_of(&self.path);
            let stale = self.loaded.read().map(|r| r.mtime != m).unwrap_or(true);
            if stale {
                self.note(self.reload());
            }
        }
    }

    /// `event_type`'s schema (`version`, or the newest) from `for_type`'s registry; the inner
    /// Err is the registry's message for an unknown type or version.
    pub fn lookup(
        &self,
        event_type: &str,
        version: Option<u32>,
    ) -> Result<std::result::Result<SchemaRef, String>> {
        let (reg, generation) = self.for_type_with_generation(event_type)?;
        Ok(match reg.get(event_type, version) {
            Ok((v, s)) => Ok(SchemaRef {
                version: v,
                found: Arc::new(Found {
                    memo: ShapeMemo::new(s),
                    schema: s as *const Schema,
                    _reg: Arc::clone(&reg),
                    generation,
                }),
            }),
            Err(m) => Err(m),
        })
    }

    /// Whether `found`'s registry is the one in use now (a kept lookup is still good: the
    /// registry is replaced, never changed in place, on every re-read).
    pub fn still_current(&self, found: &SchemaRef) -> bool {
        // (a look racing a re-read may see the old generation: as if it came just before)
        self.generation.load(Ordering::Acquire) == found.found.generation
    }

    /// Why the last periodic re-read of the file failed, if it did (the writer keeps
    /// validating with the last registry it could read).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.read().map(|e| e.clone()).unwrap_or(None)
    }

    /// Record a periodic re-read's outcome; a new failure is logged once on stderr.
    fn note(&self, res: Result<()>) {
        let msg = res.err().map(|e| e.to_string());
        let mut last = self.last_error.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = &msg {
            if last.as_deref() != Some(m.as_str()) {
                eprintln!(
                    "ledgerx: warning: could not reload the schema registry ({m}); \
                     validating with the last good one"
                );
            }
        }
        *last = msg;
    }

    /// Re-read the file now.
    pub fn reload(&self) -> Result<()> {
        let mtime = mtime_of(&self.path);
        let registry = Arc::new(load(&self.path)?);
        let mut w = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        let generation = w.generation + 1;
        *w = Loaded {
            registry,
            mtime,
            generation,
        };
        self.generation.store(generation, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_triggers_a_reload() {
        let d = std::env::temp_dir().join(format!("ledgerx-sf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let sf = SchemaFile::open(&d).unwrap();
        assert!(sf.for_type("run.created").unwrap().contains("run.created"));
        assert!(!sf.for_type("x.custom").unwrap().contains("x.custom"));
        let text = r#"{"types": {"x.custom": {"1": {"type": "object"}}}}"#;
        std::fs::write(d.join("_schema.json"), text).unwrap();
        assert!(sf.for_type("x.custom").unwrap().contains("x.custom"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_reload_is_reported_and_the_last_good_registry_kept() {
        let d = std::env::temp_dir().join(format!("ledgerx-sf2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let text = r#"{"types": {"x.custom": {"1": {"type": "object"}}}}"#;
        std::fs::write(d.join("_schema.json"), text).unwrap();
        let sf = SchemaFile::open(&d).unwrap();
        let touch = |secs: u64| {
            let f = std::fs::File::options()
                .write(true)
                .open(d.join("_schema.json"))
                .unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        std::fs::write(d.join("_schema.json"), "{broken").unwrap();
        touch(1000); // a changed mtime, whatever the file system's timestamp granularity
        sf.next_check_ms.store(0, Ordering::Relaxed); // the periodic look is due
        let reg = sf.for_type("x.custom").unwrap();
        assert!(
            reg.contains("x.custom"),
            "the last good registry still validates"
        );
        let err = sf.last_error().expect("the failure is kept for status");
        assert!(err.contains("_schema.json"), "{err}");
        std::fs::write(d.join("_schema.json"), text).unwrap();
        touch(2000);
        sf.next_check_ms.store(0, Ordering::Relaxed);
        sf.for_type("x.custom").unwrap();
        assert_eq!(sf.last_error(), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
