//! `SchemaValidator`: one compiled schema, for the registry, the CLI and the differential tests.
//! Documents are validated exactly as emit() does: serialized, then read through a token tape.

use super::convert::{with_serialized, Opts};
use super::{schema_err, SchemaError};
use crate::core::json::{Checker, Tape};
use crate::core::schema::{Schema, TapeNode, Violation};
use pyo3::prelude::*;

#[pyclass(frozen, module = "ledgerx._core")]
pub struct SchemaValidator {
    schema: Schema,
}

impl SchemaValidator {
    fn check(&self, document: &Bound<'_, PyAny>) -> PyResult<Result<(), Violation>> {
        with_serialized(document, Opts::default(), |bytes, tape| {
            Ok(self.schema.validate(&TapeNode::root(bytes, tape)))
        })
        .map_err(|e| {
            schema_err(
                e.render("document"),
                None,
                None,
                Some(e.path_str("document")),
            )
        })?
    }
}

#[pymethods]
impl SchemaValidator {
    #[new]
    fn new(schema_json: &str) -> PyResult<Self> {
        let v: serde_json::Value = serde_json::from_str(schema_json)
            .map_err(|e| SchemaError::new_err(format!("schema is not valid JSON: {e}")))?;
        let schema = Schema::compile(&v).map_err(SchemaError::new_err)?;
        Ok(SchemaValidator { schema })
    }

    /// Validate a Python object (JSON types only).
    fn is_valid(&self, document: Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.check(&document)?.is_ok())
    }

    /// Raise SchemaError `label.path: rule` on the first violation.
    #[pyo3(signature = (document, label = "data"))]
    fn validate(&self, document: Bound<'_, PyAny>, label: &str) -> PyResult<()> {
        self.check(&document)?
            .map_err(|v| schema_err(v.render(label), None, None, Some(v.path_str(label))))
    }

    /// Validate a JSON document given as text (str or bytes); refuses non-I-JSON text.
    fn is_valid_json(&self, text: &Bound<'_, PyAny>) -> PyResult<bool> {
        let owned;
        let bytes: &[u8] = if let Ok(s) = text.extract::<&str>() {
            s.as_bytes()
        } else {
            owned = text.extract::<Vec<u8>>()?;
            &owned
        };
        Checker::value_only(bytes)
            .map_err(|e| SchemaError::new_err(format!("document is not valid JSON: {e}")))?;
        let mut tape = Tape::default();
        tape.parse(bytes).map_err(SchemaError::new_err)?;
        Ok(self.schema.validate(&TapeNode::root(bytes, &tape)).is_ok())
    }
}
