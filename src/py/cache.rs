//! The Python writer's schema lookups, cached per event type while the registry they came from
//! is current (a re-read of `_schema.json` makes a new registry, never changes one in place):
//! an emit of a known type skips the registry's hash lookups.

use crate::core::schema::{Registry, Schema};
use crate::core::schema_file::SchemaFile;
use crate::core::Result;
use std::sync::{Arc, Mutex};

/// A version's schema inside a registry that this value keeps alive.
#[derive(Clone)]
pub struct Found {
    reg: Arc<Registry>,
    pub version: u32,
    schema: *const Schema,
}

// SAFETY: `schema` points into `*reg`, which `Found` owns a reference to and which is never
// mutated after it is built (`Registry` has no `&mut self` method in use once shared), so
// reading it from any thread is as safe as reading `reg` itself.
unsafe impl Send for Found {}
// SAFETY: as for `Send`: shared reads of an immutable registry kept alive by `reg`.
unsafe impl Sync for Found {}

impl Found {
    pub fn schema(&self) -> &Schema {
        // SAFETY: see the `Send` impl: `reg` keeps the pointee alive and unchanged.
        unsafe { &*self.schema }
    }
}

/// The newest version's lookup of the last few event types emitted.
#[derive(Default)]
pub struct SchemaCache {
    newest: Mutex<Vec<(String, Found)>>,
}

const KEEP: usize = 16;

impl SchemaCache {
    /// `event_type`'s schema (`version`, or the newest), as `SchemaFile::for_type` + `get`
    /// find it; Err(message) for an unknown type or version.
    pub fn find(
        &self,
        schemas: &SchemaFile,
        event_type: &str,
        version: Option<u32>,
    ) -> Result<std::result::Result<Found, String>> {
        if version.is_none() {
            schemas.refresh();
            if let Ok(g) = self.newest.lock() {
                if let Some((_, f)) = g.iter().find(|(t, _)| t == event_type) {
                    if schemas.is_current(&f.reg) {
                        return Ok(Ok(f.clone()));
                    }
                }
            }
        }
        let reg = schemas.for_type(event_type)?;
        let found = match reg.get(event_type, version) {
            Ok((v, s)) => Found {
                schema: s as *const Schema,
                reg: Arc::clone(&reg),
                version: v,
            },
            Err(m) => return Ok(Err(m)),
        };
        if version.is_none() {
            if let Ok(mut g) = self.newest.lock() {
                g.retain(|(t, f)| t != event_type && schemas.is_current(&f.reg));
                if g.len() >= KEEP {
                    g.remove(0);
                }
                g.push((event_type.to_string(), found.clone()));
            }
        }
        Ok(Ok(found))
    }
}
