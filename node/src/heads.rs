//! The `headId` numbers' table entries: an (event type, run id) pair and its schema lookup,
//! kept while the registry it came from is current.

use crate::{invalid, js_err, Hot};
use ledgerx::core::schema_file::SchemaRef;
use ledgerx::core::writer as cw;
use napi::bindgen_prelude::*;
use std::cell::RefCell;

/// One `headId` number's event type and run id (its run scope checked when it was given out),
/// with the type's newest schema as last looked up: used while that registry is still current.
pub(crate) struct HeadEntry {
    pub(crate) event_type: String,
    pub(crate) run_id: Option<String>,
    schema: RefCell<Option<SchemaRef>>,
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
    ) -> Result<SchemaRef> {
        if let Some(h) = head {
            self.schemas.refresh();
            if let Some(c) = &*h.schema.borrow() {
                if self.schemas.still_current(c) {
                    return Ok(c.clone());
                }
            }
        } else {
            cw::check_run_scope(event_type, run_id).map_err(js_err)?;
        }
        let c = self
            .schemas
            .lookup(event_type, schema_version)
            .map_err(js_err)?
            .map_err(|m| invalid(m, event_type, schema_version, None))?;
        if let Some(h) = head {
            *h.schema.borrow_mut() = Some(c.clone());
        }
        Ok(c)
    }
}
