//! A stream's `schema`: a JSON Schema written inline or as `{file: PATH}`. Loading a config
//! with its references resolved reads and compiles it, so `validate` and `check` name a
//! missing or broken schema file instead of the run failing when the stream starts.

use serde_json::Value;

/// Why a stream's `schema` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not JSON: {message}")]
    NotJson { path: String, message: String },
    #[error("{path} is not a valid JSON Schema: {message}")]
    InvalidFile { path: String, message: String },
    #[error("not a valid JSON Schema: {message}")]
    Invalid { message: String },
}

impl SchemaError {
    /// The config key the error is about, under the stream at `at` (e.g. `streams[0]`).
    pub fn key(&self, at: &str) -> String {
        match self {
            Self::Invalid { .. } => format!("{at}.schema"),
            _ => format!("{at}.schema.file"),
        }
    }
}

/// The path of a `{file: PATH}` schema (an object with that one key), if it is one.
fn file_of(schema: &Value) -> Option<&str> {
    let object = schema.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get("file")?.as_str()
}

/// Reads (for `{file: PATH}`) and compiles a stream's schema.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, SchemaError> {
    let Some(path) = file_of(schema) else {
        return jsonschema::validator_for(schema).map_err(|error| SchemaError::Invalid {
            message: error.to_string(),
        });
    };
    let text = std::fs::read_to_string(path).map_err(|error| SchemaError::Read {
        path: path.to_owned(),
        message: error.to_string(),
    })?;
    let document: Value = serde_json::from_str(&text).map_err(|error| SchemaError::NotJson {
        path: path.to_owned(),
        message: error.to_string(),
    })?;
    jsonschema::validator_for(&document).map_err(|error| SchemaError::InvalidFile {
        path: path.to_owned(),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_and_file_schemas_compile_and_errors_name_the_file() {
        assert!(compile(&json!({"type": "object"})).is_ok());
        let error = compile(&json!({"type": 12})).unwrap_err();
        assert_eq!(error.key("streams[0]"), "streams[0].schema");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.json");
        std::fs::write(&path, r#"{"required": ["name"]}"#).unwrap();
        let file = path.display().to_string();
        assert!(compile(&json!({"file": file})).is_ok());

        let missing = dir.path().join("missing.json").display().to_string();
        let error = compile(&json!({"file": missing})).unwrap_err();
        assert!(matches!(error, SchemaError::Read { .. }), "{error}");
        assert_eq!(error.key("streams[1]"), "streams[1].schema.file");
        assert!(error.to_string().contains(&missing), "{error}");

        std::fs::write(&path, "{not json").unwrap();
        let error = compile(&json!({"file": file})).unwrap_err();
        assert!(matches!(error, SchemaError::NotJson { .. }), "{error}");

        std::fs::write(&path, r#"{"type": "no-such-type"}"#).unwrap();
        let error = compile(&json!({"file": file})).unwrap_err();
        assert!(matches!(error, SchemaError::InvalidFile { .. }), "{error}");
        assert!(error.to_string().contains(&file), "{error}");
    }
}
