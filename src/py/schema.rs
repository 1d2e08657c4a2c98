//! `SchemaValidator`: one compiled schema, for the registry, the CLI and the differential tests.

use super::convert::PyNode;
use super::SchemaError;
use crate::core::schema::Schema;
use pyo3::prelude::*;

#[pyclass(frozen, module = "ledgerx._core")]
pub struct SchemaValidator {
    schema: Schema,
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

    fn is_valid(&self, document: Bound<'_, PyAny>) -> PyResult<bool> {
        check_jsonable(&document)?;
        Ok(self.schema.validate(&PyNode(document)).is_ok())
    }

    #[pyo3(signature = (document, label = "data"))]
    fn validate(&self, document: Bound<'_, PyAny>, label: &str) -> PyResult<()> {
        check_jsonable(&document)?;
        self.schema
            .validate(&PyNode(document))
            .map_err(|v| SchemaError::new_err(v.render(label)))
    }

    fn is_valid_json(&self, text: &[u8]) -> PyResult<bool> {
        let v: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| SchemaError::new_err(format!("document is not valid JSON: {e}")))?;
        Ok(self.schema.validate(&&v).is_ok())
    }
}

fn check_jsonable(doc: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut sink = Vec::new();
    super::convert::write_obj(&mut sink, doc, 0)
        .map_err(|e| SchemaError::new_err(e.render("document")))
}
