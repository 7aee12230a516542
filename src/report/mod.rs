//! What a run leaves behind for the systems after it: the run manifest, the commit marker of
//! a run ([`manifest`]), the orchestrator summary ([`xcom`]), metrics ([`metrics`]),
//! OpenLineage events ([`openlineage`]) and the dbt sources generated from a config
//! ([`dbt`]).

pub mod dbt;
pub mod manifest;
pub mod metrics;
pub mod openlineage;
pub mod xcom;
