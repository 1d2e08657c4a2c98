//! The `headId` numbers' table entries: an (event type, run id) pair and its schema lookup,
//! kept while the registry it came from is current.

use crate::{invalid, js_err, Hot};
use ledgerx::core::schema::{Registry, Schema};
use ledgerx::core::writer as cw;
use napi::bindgen_prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

/// One `headId` number's event type and run id (its run scope checked when it was given out),
/// with the type's newest schema as last looked up: used while that registry is still current.
pub(crate) struct HeadEntry {
    pub(crate) event_type: String,
    pub(crate) run_id: Option<String>,
    schema: RefCell<Option<CachedSchema>>,
}

impl HeadEntry {
    pub(crate) fn new(event_type: String, run_id: Option<String>) -> Self {
        HeadEntry {
            event_type,
            run_id,
            schema: RefCell::new(None),
        }
    }
}

/// A registry, a version and that version's schema inside it (kept alive by `reg`, which is
/// never changed in place: a re-read of the file makes a new one).
#[derive(Clone)]
pub(crate) struct CachedSchema {
    pub(crate) reg: Arc<Registry>,
    pub(crate) version: u32,
    pub(crate) schema: *const Schema,
}

impl Hot {
    /// The registry and schema for an event: looked up (run scope checked first, as every
    /// emit does), or for a `headId` pair (newest version, run scope checked when the number
    /// was given out) taken from its cache while the registry it came from is still current.
    pub(crate) fn schema_for(
        &self,
        event_type: &str,
        run_id: Option<&str>,
        schema_version: Option<u32>,
        head: Option<&HeadEntry>,
    ) -> Result<CachedSchema> {
        if let Some(h) = head {
            self.schemas.refresh();
            if let Some(c) = &*h.schema.borrow() {
                if self.schemas.is_current(&c.reg) {
                    return Ok(c.clone());
                }
            }
        } else {
            cw::check_run_scope(event_type, run_id).map_err(js_err)?;
        }
        let reg = self.schemas.for_type(event_type).map_err(js_err)?;
        let (version, schema) = reg
            .get(event_type, schema_version)
            .map_err(|m| invalid(m, event_type, schema_version, None))?;
        let c = CachedSchema {
            schema: schema as *const Schema,
            reg: Arc::clone(&reg),
            version,
        };
        if let Some(h) = head {
            *h.schema.borrow_mut() = Some(c.clone());
        }
        Ok(c)
    }
}
