//! Per-record validation: the primary key and `required` fields present and non-null, and
//! an optional JSON Schema. A record that fails goes to the dead letters with the reason.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::StreamConfig;
use crate::config::schema::{SchemaError, compile};
use crate::records;

/// Why a record was dead-lettered (`_error` in the dead-letter envelope).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
    /// JSON pointer of the offending value.
    pub path: String,
}

/// Errors preparing a stream's validator.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("cannot read the JSON Schema of stream `{stream}` from {path}: {message}")]
    SchemaFile {
        stream: String,
        path: String,
        message: String,
    },
    #[error("the JSON Schema of stream `{stream}` is invalid: {message}")]
    Schema { stream: String, message: String },
}

/// Checks records of one stream.
pub struct RecordValidator {
    primary_key: Vec<String>,
    required: Vec<String>,
    schema: Option<jsonschema::Validator>,
}

fn pointer_of(field: &str) -> String {
    if field.starts_with('/') {
        field.to_owned()
    } else {
        format!("/{field}")
    }
}

impl RecordValidator {
    /// Compiles the stream's rules; a `schema: {file: PATH}` is read here.
    pub fn new(stream: &StreamConfig) -> Result<Self, ValidatorError> {
        let schema = match &stream.schema {
            None => None,
            Some(schema) => Some(compile(schema).map_err(|error| match error {
                SchemaError::Invalid { message } => ValidatorError::Schema {
                    stream: stream.name.clone(),
                    message,
                },
                SchemaError::InvalidFile { path, message } => ValidatorError::Schema {
                    stream: stream.name.clone(),
                    message: format!("{path}: {message}"),
                },
                SchemaError::Read { path, message } | SchemaError::NotJson { path, message } => {
                    ValidatorError::SchemaFile {
                        stream: stream.name.clone(),
                        path,
                        message,
                    }
                }
            })?),
        };
        Ok(Self {
            primary_key: stream.primary_key.clone(),
            required: stream.required.clone(),
            schema,
        })
    }

    /// The first rule `record` breaks, if any. `key_found` says whether the caller already
    /// read the record's primary key: the key fields are then not looked up a second time.
    pub fn check(&self, record: &RawValue, key_found: bool) -> Option<Violation> {
        let key_fields: &[String] = if key_found { &[] } else { &self.primary_key };
        for (kind, fields) in [
            ("primary key field", key_fields),
            ("required field", &self.required[..]),
        ] {
            for field in fields {
                let missing = match records::field(record, field) {
                    None => Some("missing"),
                    Some(value) if value.get() == "null" => Some("null"),
                    Some(_) => None,
                };
                if let Some(missing) = missing {
                    return Some(Violation {
                        code: "VALIDATION_ERROR",
                        message: format!("{kind} `{field}` is {missing}"),
                        path: pointer_of(field),
                    });
                }
            }
        }
        let schema = self.schema.as_ref()?;
        let instance: serde_json::Value = match serde_json::from_str(record.get()) {
            Ok(instance) => instance,
            Err(error) => {
                return Some(Violation {
                    code: "PARSING_ERROR",
                    message: error.to_string(),
                    path: String::new(),
                });
            }
        };
        schema.validate(&instance).err().map(|error| Violation {
            code: "VALIDATION_ERROR",
            message: format!("does not match the stream's JSON Schema: {error}"),
            path: error.instance_path().as_str().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_stream as stream;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn primary_key_and_required_fields() {
        let validator = RecordValidator::new(&stream(r#", "required": ["/customer/email"]"#)).unwrap();
        assert_eq!(
            validator.check(raw(r#"{"id": 1, "customer": {"email": "e"}}"#), true),
            None
        );
        let violation = validator.check(raw(r#"{"id": null}"#), false).unwrap();
        assert_eq!(
            (violation.message.as_str(), violation.path.as_str()),
            ("primary key field `id` is null", "/id")
        );
        let violation = validator.check(raw(r#"{"id": 2, "customer": {}}"#), true).unwrap();
        assert_eq!(violation.path, "/customer/email");
        assert!(violation.message.contains("missing"));
    }

    #[test]
    fn json_schema_violations_name_the_path() {
        let validator = RecordValidator::new(&stream(
            r#", "schema": {"type": "object", "properties": {"amount": {"type": "number"}}}"#,
        ))
        .unwrap();
        assert_eq!(validator.check(raw(r#"{"id": 1, "amount": 2.5}"#), true), None);
        let violation = validator.check(raw(r#"{"id": 1, "amount": "2.5"}"#), true).unwrap();
        assert_eq!(violation.path, "/amount");
        assert_eq!(violation.code, "VALIDATION_ERROR");
    }

    #[test]
    fn schema_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.json");
        std::fs::write(&path, r#"{"required": ["name"]}"#).unwrap();
        let validator =
            RecordValidator::new(&stream(&format!(r#", "schema": {{"file": "{}"}}"#, path.display()))).unwrap();
        assert!(validator.check(raw(r#"{"id": 1}"#), true).is_some());
        assert!(RecordValidator::new(&stream(r#", "schema": {"file": "/nonexistent.json"}"#)).is_err());
    }
}
