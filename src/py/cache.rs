//! The Python writer's schema lookups, kept per event type while the registry they came from
//! is current (`SchemaFile::still_current`): an emit of a known type skips the registry's hash
//! lookups.

use crate::core::schema_file::{SchemaFile, SchemaRef};
use crate::core::Result;
use std::sync::Mutex;

/// The newest version's lookup of the last few event types emitted.
#[derive(Default)]
pub struct SchemaCache {
    newest: Mutex<Vec<(String, SchemaRef)>>,
}

const KEEP: usize = 16;

impl SchemaCache {
    /// `event_type`'s schema (`version`, or the newest), as `SchemaFile::lookup` finds it;
    /// Err(message) for an unknown type or version.
    pub fn find(
        &self,
        schemas: &SchemaFile,
        event_type: &str,
        version: Option<u32>,
    ) -> Result<std::result::Result<SchemaRef, String>> {
        if version.is_none() {
            schemas.refresh();
            if let Ok(g) = self.newest.lock() {
                if let Some((_, f)) = g.iter().find(|(t, _)| t == event_type) {
                    if schemas.still_current(f) {
                        return Ok(Ok(f.clone()));
                    }
                }
            }
        }
        let found = match schemas.lookup(event_type, version)? {
            Ok(f) => f,
            Err(m) => return Ok(Err(m)),
        };
        if version.is_none() {
            if let Ok(mut g) = self.newest.lock() {
                g.retain(|(t, f)| t != event_type && schemas.still_current(f));
                if g.len() >= KEEP {
                    g.remove(0);
                }
                g.push((event_type.to_string(), found.clone()));
            }
        }
        Ok(Ok(found))
    }
}
