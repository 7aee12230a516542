//! Warehouse adapters: column types per warehouse and the dbt-external-tables `external:`
//! block of each source table (location, file format, Hive partitions of the landing layout).
//! The blocks follow the properties that the macros vendored in
//! `dbt/macros/external_tables/` (dbt-external-tables 0.8.0) read.

use crate::landing::config::Compression;
use std::fmt;
use std::str::FromStr;

/// The dbt adapter a sources file is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// dbt-duckdb reading the landed files directly (`meta.external_location`).
    Duckdb,
    /// Snowflake external tables over an external stage.
    Snowflake,
    /// BigQuery external tables over GCS with Hive partitioning.
    Bigquery,
    /// Databricks (Spark) tables `using json` over cloud storage.
    Databricks,
    /// Redshift Spectrum external tables in an external schema.
    Redshift,
}

impl Adapter {
    /// Every adapter name, as `--adapter` accepts it.
    pub const NAMES: &'static [&'static str] = &["duckdb", "snowflake", "bigquery", "databricks", "redshift"];

    /// The name `--adapter` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Duckdb => "duckdb",
            Adapter::Snowflake => "snowflake",
            Adapter::Bigquery => "bigquery",
            Adapter::Databricks => "databricks",
            Adapter::Redshift => "redshift",
        }
    }

    /// The column type of `kind` in this warehouse's DDL.
    pub(super) fn sql_type(self, kind: &Kind) -> String {
        match (self, kind) {
            (Adapter::Duckdb, Kind::Struct(fields)) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, kind)| format!("{name} {}", self.sql_type(kind)))
                    .collect();
                format!("STRUCT({})", fields.join(", "))
            }
            (Adapter::Duckdb, Kind::List(item)) => format!("{}[]", self.sql_type(item)),
            (Adapter::Snowflake, Kind::Struct(_) | Kind::List(_)) => "variant".into(),
            (Adapter::Bigquery, Kind::Struct(fields)) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, kind)| format!("{name} {}", self.sql_type(kind)))
                    .collect();
                format!("struct<{}>", fields.join(", "))
            }
            (Adapter::Databricks | Adapter::Redshift, Kind::Struct(fields)) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, kind)| format!("{name}: {}", self.nested_type(kind)))
                    .collect();
                format!("struct<{}>", fields.join(", "))
            }
            (Adapter::Bigquery | Adapter::Databricks | Adapter::Redshift, Kind::List(item)) => {
                format!("array<{}>", self.nested_type(item))
            }
            (_, scalar) => self.scalar_type(scalar).into(),
        }
    }

    /// Types inside `struct<>`/`array<>`: Redshift Spectrum takes Hive names there.
    fn nested_type(self, kind: &Kind) -> String {
        match (self, kind) {
            (Adapter::Redshift, Kind::Text) => "varchar(65535)".into(),
            (Adapter::Redshift, Kind::Float) => "double".into(),
            _ => self.sql_type(kind),
        }
    }

    fn scalar_type(self, kind: &Kind) -> &'static str {
        use Adapter::*;
        use Kind::*;
        match (self, kind) {
            (Duckdb, Text) => "VARCHAR",
            (Duckdb, Timestamp) => "TIMESTAMPTZ",
            (Duckdb, Int) => "BIGINT",
            (Duckdb, Float) => "DOUBLE",
            (Duckdb, Bool) => "BOOLEAN",
            (Duckdb, Date) => "DATE",
            (Snowflake, Text) => "varchar",
            (Snowflake, Timestamp) => "timestamp_tz",
            (Snowflake, Int) => "number",
            (Snowflake, Float) => "float",
            (Bigquery, Text) => "string",
            (Bigquery, Int) => "int64",
            (Bigquery, Float) => "float64",
            (Bigquery, Bool) => "bool",
            (Databricks, Text) => "string",
            (Databricks, Int) => "bigint",
            (Databricks, Float) => "double",
            (Redshift, Text) => "varchar(65535)",
            (Redshift, Int) => "bigint",
            (Redshift, Float) => "double precision",
            (_, Timestamp) => "timestamp",
            (_, Bool) => "boolean",
            (_, Date) => "date",
            (_, Struct(_) | List(_)) => unreachable!("nested kinds are handled by sql_type"),
        }
    }

    /// The landing root as the warehouse addresses it: `--location` when given, else a Jinja
    /// expression dbt resolves when it parses the project.
    pub(super) fn root(self, location: Option<&str>) -> String {
        if let Some(location) = location {
            return location.trim_end_matches('/').to_owned();
        }
        match self {
            Adapter::Duckdb => "{{ env_var('LANDFALL_LANDING_URL', 'file://../landing').rstrip('/') | replace('file://', '', 1) }}".into(),
            Adapter::Snowflake => {
                "{{ var('landfall_external_root', env_var('LANDFALL_SNOWFLAKE_STAGE', '@landfall_landing')).rstrip('/') }}".into()
            }
            _ => "{{ var('landfall_external_root', env_var('LANDFALL_LANDING_URL', '')).rstrip('/') }}".into(),
        }
    }

    /// Whether this warehouse's external tables read JSON parts compressed so: none of
    /// BigQuery, Databricks and Redshift Spectrum documents zstd for JSON external tables,
    /// so their sources are not generated over a zstd landing.
    pub fn reads(self, compression: Compression) -> Result<(), String> {
        match (self, compression) {
            (Adapter::Bigquery | Adapter::Databricks | Adapter::Redshift, Compression::Zstd) => Err(format!(
                "landing.compression: zstd: {self} external tables do not read zstd-compressed JSON; land with compression: gzip (the default) for {self}"
            )),
            _ => Ok(()),
        }
    }

    /// The `external:` block (at 8 spaces, as a source table property) for the files under
    /// `{root}/{path}`: JSONL parts compressed so (`Some`) or plain JSON manifests (`None`),
    /// partitioned by `partitions` (Hive keys of the landing layout, each with its kind).
    pub(super) fn external_block(
        self,
        root: &str,
        path: &str,
        parts: Option<Compression>,
        partitions: &[(&str, Kind)],
    ) -> Vec<String> {
        let q = super::quoted;
        let suffix = match parts {
            Some(Compression::Gzip) => "jsonl[.]gz",
            Some(Compression::Zstd) => "jsonl[.]zst",
            Some(Compression::None) => "jsonl",
            None => "json",
        };
        let gzip = parts == Some(Compression::Gzip);
        let mut out = vec!["        external:".to_owned()];
        let mut push = |line: String| out.push(line);
        match self {
            Adapter::Duckdb => unreachable!("duckdb reads meta.external_location"),
            Adapter::Snowflake => {
                push(format!("          location: {}", q(&format!("{root}/{path}/"))));
                let compression = match parts {
                    Some(Compression::Gzip) => "gzip",
                    Some(Compression::Zstd) => "zstd",
                    _ => "none",
                };
                push(format!(
                    "          file_format: \"(type = json compression = {compression})\""
                ));
                push(format!("          pattern: {}", q(&format!(".*[.]{suffix}"))));
                push("          auto_refresh: false".into());
            }
            Adapter::Bigquery => {
                push(format!("          location: {}", q(&format!("{root}/{path}/*"))));
                push("          options:".into());
                push("            format: NEWLINE_DELIMITED_JSON".into());
                if gzip {
                    push("            compression: GZIP".into());
                }
                push("            ignore_unknown_values: true".into());
                push(format!(
                    "            hive_partition_uri_prefix: {}",
                    q(&format!("{root}/{path}/"))
                ));
            }
            Adapter::Databricks => {
                push(format!("          location: {}", q(&format!("{root}/{path}"))));
                push("          using: json".into());
            }
            Adapter::Redshift => {
                push(format!("          location: {}", q(&format!("{root}/{path}/"))));
                push("          row_format: \"serde 'org.openx.data.jsonserde.JsonSerDe'\"".into());
            }
        }
        push("          partitions:".into());
        for (name, kind) in partitions {
            // Redshift Spectrum registers each partition; the first key (the date) is enough,
            // since Spectrum also reads the files in a partition's subfolders (run_id=...).
            if self == Adapter::Redshift && *name != "extracted_date" {
                continue;
            }
            push(format!("            - name: {name}"));
            push(format!("              data_type: {}", self.sql_type(kind)));
            match self {
                Adapter::Snowflake => {
                    let value = format!("split_part(split_part(metadata$filename, '{name}=', 2), '/', 1)");
                    let expression = match kind {
                        Kind::Date => format!("to_date({value})"),
                        _ => value,
                    };
                    push(format!("              expression: {}", q(&expression)));
                }
                Adapter::Redshift => {
                    push("              vals: {macro: landfall.landfall_partition_dates, args: {}}".into());
                    push("              path_macro: landfall.key_value".into());
                }
                _ => {}
            }
        }
        out
    }

    /// The column holding the part file a row came from, when the warehouse needs it declared
    /// (Snowflake's `metadata$filename`); the others expose a pseudo-column instead (see the
    /// `landfall_file_column` macro).
    pub(super) fn file_column_expression(self) -> Option<&'static str> {
        match self {
            Adapter::Snowflake => Some("metadata$filename"),
            _ => None,
        }
    }
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Adapter {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "duckdb" => Ok(Adapter::Duckdb),
            "snowflake" => Ok(Adapter::Snowflake),
            "bigquery" => Ok(Adapter::Bigquery),
            "databricks" => Ok(Adapter::Databricks),
            "redshift" => Ok(Adapter::Redshift),
            other => Err(format!(
                "unknown adapter `{other}` (one of {})",
                Adapter::NAMES.join(", ")
            )),
        }
    }
}

/// The type of a landed field, independent of the warehouse.
#[derive(Clone, Debug)]
pub(super) enum Kind {
    Text,
    Timestamp,
    Int,
    Float,
    Bool,
    Date,
    Struct(&'static [(&'static str, Kind)]),
    List(&'static Kind),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflake_patterns_match_each_part_suffix() {
        let pattern = |parts| {
            Adapter::Snowflake
                .external_block("@stage", "shop/orders", parts, &[])
                .into_iter()
                .find(|line| line.contains("pattern:"))
                .unwrap()
        };
        assert!(pattern(Some(Compression::Gzip)).contains(".*[.]jsonl[.]gz"));
        assert!(pattern(Some(Compression::Zstd)).contains(".*[.]jsonl[.]zst"));
        assert!(pattern(Some(Compression::None)).contains(".*[.]jsonl\""));
        assert!(pattern(None).contains(".*[.]json\""));
        for adapter in [Adapter::Bigquery, Adapter::Databricks, Adapter::Redshift] {
            let refused = adapter.reads(Compression::Zstd).unwrap_err();
            assert!(refused.starts_with("landing.compression: zstd"), "{refused}");
            assert!(adapter.reads(Compression::Gzip).is_ok());
        }
        assert!(Adapter::Snowflake.reads(Compression::Zstd).is_ok());
        assert!(Adapter::Duckdb.reads(Compression::Zstd).is_ok());
    }

    #[test]
    fn nested_types_per_warehouse() {
        const FILE: Kind = Kind::Struct(&[("path", Kind::Text), ("rows", Kind::Int)]);
        const FILES: Kind = Kind::List(&FILE);
        assert_eq!(Adapter::Duckdb.sql_type(&FILES), "STRUCT(path VARCHAR, rows BIGINT)[]");
        assert_eq!(Adapter::Snowflake.sql_type(&FILES), "variant");
        assert_eq!(
            Adapter::Bigquery.sql_type(&FILES),
            "array<struct<path string, rows int64>>"
        );
        assert_eq!(
            Adapter::Databricks.sql_type(&FILES),
            "array<struct<path: string, rows: bigint>>"
        );
        assert_eq!(
            Adapter::Redshift.sql_type(&FILES),
            "array<struct<path: varchar(65535), rows: bigint>>"
        );
    }

    #[test]
    fn adapter_names_round_trip() {
        for name in Adapter::NAMES {
            assert_eq!(name.parse::<Adapter>().unwrap().name(), *name);
        }
        assert!("postgres".parse::<Adapter>().unwrap_err().contains("snowflake"));
    }
}
