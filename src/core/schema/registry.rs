//! A registry's schemas (`_schema.json`'s `types`), compiled per type and version.

use super::*;

/// All schemas of a registry, by type and version, compiled.
#[derive(Debug, Default)]
pub struct Registry {
    types: HashMap<String, Vec<(u32, Schema)>>,
    /// Types whose entry in the file is invalid (hand-edited): their events fail closed with
    /// this reason; every other type stays writable.
    broken: HashMap<String, String>,
}

impl Registry {
    /// Parse `_schema.json`: `{"types": {TYPE: {"VERSION": SCHEMA, ...}, ...}, ...}`.
    pub fn from_json(text: &str) -> Result<Registry, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("bad registry: {e}"))?;
        let types = doc
            .get("types")
            .and_then(Value::as_object)
            .ok_or("bad registry: no 'types' object")?;
        let mut reg = Registry::default();
        for (t, versions) in types {
            match Self::compile_type(t, versions) {
                Ok(list) => {
                    reg.types.insert(t.clone(), list);
                }
                Err(e) => {
                    reg.broken.insert(t.clone(), e);
                }
            }
        }
        Ok(reg)
    }

    fn compile_type(t: &str, versions: &Value) -> Result<Vec<(u32, Schema)>, String> {
        let versions = versions
            .as_object()
            .ok_or_else(|| format!("bad registry: {t} must map versions to schemas"))?;
        let mut list = Vec::new();
        for (ver, s) in versions {
            let n: u32 = ver
                .parse()
                .map_err(|_| format!("bad registry: {t} version '{ver}' is not a number"))?;
            let compiled = Schema::compile(s).map_err(|e| format!("{t} v{n}: {e}"))?;
            list.push((n, compiled));
        }
        list.sort_by_key(|(n, _)| *n);
        Ok(list)
    }

    /// The types whose registry entry is invalid, with the reason.
    pub fn broken(&self) -> &HashMap<String, String> {
        &self.broken
    }

    /// The schema for a type: the newest version, or the one asked for.
    pub fn get(&self, event_type: &str, version: Option<u32>) -> Result<(u32, &Schema), String> {
        let Some(list) = self.types.get(event_type) else {
            if let Some(why) = self.broken.get(event_type) {
                return Err(format!(
                    "{event_type}: its entry in events/_schema.json is invalid ({why}); no event \
                     of this type is written until it is fixed"
                ));
            }
            return Err(format!("unknown event type '{event_type}'"));
        };
        match version {
            None => list
                .last()
                .map(|(n, s)| (*n, s))
                .ok_or_else(|| format!("{event_type}: no versions")),
            Some(want) => list
                .iter()
                .find(|(n, _)| *n == want)
                .map(|(n, s)| (*n, s))
                .ok_or_else(|| format!("{event_type}: unknown schema_version {want}")),
        }
    }

    pub fn contains(&self, event_type: &str) -> bool {
        self.types.contains_key(event_type) || self.broken.contains_key(event_type)
    }
}
