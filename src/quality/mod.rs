//! Data quality: per-record validation and dead letters, PII redaction, duplicate
//! detection within a run, and schema drift.

pub mod dedupe;
pub mod drift;
pub mod pii;
pub mod validate;
