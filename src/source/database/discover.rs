//! `landfall discover`: what a database holds, read from its catalog over one read-only
//! connection (the dialect's own [`super::Dialect::connect`]): the tables and views of
//! every non-system schema, their columns with the server's types, nullability, the primary
//! key in key order, and the date/time columns that could serve as an incremental cursor,
//! ranked, each with the reason it is a candidate.
//!
//! Each dialect reads its catalog into [`CatalogColumn`] rows ([`super::Connection::discover`]);
//! everything after that (grouping, the dbt type of a column, the ranking of cursors) is
//! here, the same for every database.

use serde::Serialize;

use super::{DatabaseError, dialect};
use crate::http::config::SourceConfig;

/// Schemas that belong to the server, never to an application: never listed.
pub const SYSTEM_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    "pg_toast",
    "mysql",
    "performance_schema",
    "sys",
];

/// A column's type as far as `streams[].columns` (the dbt staging types) and cursors go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeClass {
    Integer,
    Number,
    Boolean,
    /// A point in time with its offset (`timestamptz`, MySQL `TIMESTAMP`): lands as RFC 3339.
    Instant,
    /// A date and time without an offset (`timestamp`, MySQL `DATETIME`).
    LocalDateTime,
    Date,
    Json,
    String,
}

impl TypeClass {
    /// The `streams[].columns` type (one of [`crate::config::COLUMN_TYPES`]).
    pub fn dbt_type(self) -> &'static str {
        match self {
            TypeClass::Integer => "integer",
            TypeClass::Number => "number",
            TypeClass::Boolean => "boolean",
            TypeClass::Instant | TypeClass::LocalDateTime => "timestamp",
            TypeClass::Date => "date",
            TypeClass::Json => "json",
            TypeClass::String => "string",
        }
    }

    fn is_temporal(self) -> bool {
        matches!(self, TypeClass::Instant | TypeClass::LocalDateTime | TypeClass::Date)
    }

    /// PostgreSQL: from `pg_type.typname` and `typcategory` (domains carry their base
    /// type's category, arrays are `A`).
    pub fn of_postgres(type_name: &str, category: &str) -> TypeClass {
        match type_name {
            "int2" | "int4" | "int8" => TypeClass::Integer,
            // money lands as numeric (`docs/databases.md`).
            "numeric" | "float4" | "float8" | "money" => TypeClass::Number,
            "bool" => TypeClass::Boolean,
            "timestamptz" => TypeClass::Instant,
            "timestamp" => TypeClass::LocalDateTime,
            "date" => TypeClass::Date,
            "json" | "jsonb" => TypeClass::Json,
            _ => match category {
                "A" => TypeClass::Json,
                "B" => TypeClass::Boolean,
                "N" => TypeClass::Number,
                _ => TypeClass::String,
            },
        }
    }

    /// MySQL and MariaDB: from `information_schema.COLUMNS.DATA_TYPE`. `TINYINT(1)` lands
    /// as a number, so it is an integer; MariaDB's JSON is `longtext` and lands as text.
    pub fn of_mysql(data_type: &str) -> TypeClass {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" | "bit" => TypeClass::Integer,
            "decimal" | "numeric" | "float" | "double" | "real" => TypeClass::Number,
            "timestamp" => TypeClass::Instant,
            "datetime" => TypeClass::LocalDateTime,
            "date" => TypeClass::Date,
            "json" => TypeClass::Json,
            _ => TypeClass::String,
        }
    }
}

/// One column of one table or view, as a dialect reads it from the catalog.
#[derive(Clone, Debug)]
pub struct CatalogColumn {
    pub schema: String,
    pub table: String,
    /// `table`, `view`, `materialized_view`, `foreign_table`.
    pub kind: String,
    pub column: String,
    /// The server's type as it writes it (`timestamp with time zone`, `decimal(12,2)`).
    pub type_name: String,
    pub class: TypeClass,
    pub nullable: bool,
    /// The column's position in the primary key (1-based), if it is part of it.
    pub key_position: Option<i64>,
}

/// The catalog of a database, printed by `landfall discover`.
#[derive(Clone, Debug, Serialize)]
pub struct Catalog {
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The system schemas, never listed.
    pub excluded_schemas: Vec<String>,
    pub schemas: Vec<Schema>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Schema {
    pub name: String,
    pub tables: Vec<Table>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `table`, `view`, `materialized_view` or `foreign_table`.
    pub kind: String,
    pub columns: Vec<Column>,
    /// The primary key's columns in key order; empty without one (views have none).
    pub primary_key: Vec<String>,
    /// Date/time columns that could be `incremental.cursor_field`, best first.
    pub cursor_candidates: Vec<CursorCandidate>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Column {
    pub name: String,
    /// The server's type.
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    /// The `streams[].columns` type the starter config gives it.
    pub dbt_type: &'static str,
    #[serde(skip)]
    pub class: TypeClass,
}

#[derive(Clone, Debug, Serialize)]
pub struct CursorCandidate {
    pub column: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Why it is a candidate, and what to watch for.
    pub reason: String,
    /// Whether the starter config uses a column of this rank as the cursor: it is named
    /// like a change or creation time. Other date/time columns are listed, never chosen.
    pub recommended: bool,
    #[serde(skip)]
    pub class: TypeClass,
}

impl Table {
    /// `schema.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The cursor the starter config uses: the best candidate, when it is recommended.
    pub fn cursor(&self) -> Option<&CursorCandidate> {
        self.cursor_candidates.first().filter(|candidate| candidate.recommended)
    }
}

/// Names that say a column holds a row's last change, best first.
const CHANGE_NAMES: &[&str] = &[
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "last_updated",
    "last_updated_at",
    "updated",
    "modified",
    "updated_on",
    "modified_on",
    "changed_at",
    "update_time",
    "updatedat",
    "modifiedat",
    "lastmodified",
    "lastmodifieddate",
];

/// Names that say a column holds a row's creation (a row changed later is not read again).
const CREATION_NAMES: &[&str] = &[
    "created_at",
    "inserted_at",
    "created",
    "created_on",
    "creation_time",
    "create_time",
    "createdat",
    "inserted",
];

/// How well a column's name says it tracks changes: 0 a known change name, 1 a name that
/// mentions a change, 2 a creation name, 3 anything else; and why.
fn name_rank(column: &str) -> (u8, &'static str) {
    let lower = column.to_ascii_lowercase();
    if CHANGE_NAMES.contains(&lower.as_str()) {
        (
            0,
            "named like a last-change time: rows updated since the checkpoint are read again",
        )
    } else if ["updat", "modif", "chang"].iter().any(|part| lower.contains(part)) {
        (1, "its name mentions a change: check that every update sets it")
    } else if CREATION_NAMES.contains(&lower.as_str()) {
        (
            2,
            "named like a creation time: new rows are read, rows changed later are not (right for append-only tables)",
        )
    } else {
        (
            3,
            "a date/time column whose name does not say it tracks changes: not chosen, check it by hand",
        )
    }
}

/// The cursor candidates among `columns`, best first: by name, then NOT NULL before
/// nullable (an incremental stream never reads a row whose cursor is NULL), then a time
/// before a date (finer windows), then table order.
fn candidates(columns: &[Column]) -> Vec<CursorCandidate> {
    let mut ranked: Vec<(u8, bool, bool, usize, CursorCandidate)> = columns
        .iter()
        .enumerate()
        .filter(|(_, column)| column.class.is_temporal())
        .map(|(index, column)| {
            let (rank, why) = name_rank(&column.name);
            let mut reason = format!("{} column {why}", column.type_name);
            if column.nullable {
                reason.push_str("; nullable: rows where it is NULL are never read incrementally");
            }
            if column.class == TypeClass::Date {
                reason.push_str("; a date: windows are whole days");
            }
            let candidate = CursorCandidate {
                column: column.name.clone(),
                type_name: column.type_name.clone(),
                reason,
                recommended: rank <= 2,
                class: column.class,
            };
            (rank, column.nullable, column.class == TypeClass::Date, index, candidate)
        })
        .collect();
    ranked.sort_by_key(|(rank, nullable, date, index, _)| (*rank, *nullable, *date, *index));
    ranked.into_iter().map(|(.., candidate)| candidate).collect()
}

impl Catalog {
    /// Groups a dialect's rows (ordered by schema, table and column position) into schemas
    /// and tables, leaving out the system schemas.
    pub fn from_rows(source: &SourceConfig, rows: Vec<CatalogColumn>) -> Catalog {
        let mut tables: Vec<(Table, Vec<(i64, String)>)> = Vec::new();
        for row in rows {
            if SYSTEM_SCHEMAS.contains(&row.schema.as_str()) {
                continue;
            }
            let same = tables
                .last()
                .is_some_and(|(table, _)| table.schema == row.schema && table.name == row.table);
            if !same {
                tables.push((
                    Table {
                        schema: row.schema.clone(),
                        name: row.table.clone(),
                        kind: row.kind.clone(),
                        columns: Vec::new(),
                        primary_key: Vec::new(),
                        cursor_candidates: Vec::new(),
                    },
                    Vec::new(),
                ));
            }
            let Some((table, key)) = tables.last_mut() else {
                continue;
            };
            if let Some(position) = row.key_position {
                key.push((position, row.column.clone()));
            }
            table.columns.push(Column {
                name: row.column,
                type_name: row.type_name,
                nullable: row.nullable,
                dbt_type: row.class.dbt_type(),
                class: row.class,
            });
        }
        let mut schemas: Vec<Schema> = Vec::new();
        for (mut table, mut key) in tables {
            key.sort();
            table.primary_key = key.into_iter().map(|(_, column)| column).collect();
            table.cursor_candidates = candidates(&table.columns);
            match schemas.last_mut() {
                Some(schema) if schema.name == table.schema => schema.tables.push(table),
                _ => schemas.push(Schema {
                    name: table.schema.clone(),
                    tables: vec![table],
                }),
            }
        }
        Catalog {
            source: source.name.clone(),
            kind: source.kind.as_str().to_owned(),
            excluded_schemas: SYSTEM_SCHEMAS.iter().map(|schema| (*schema).to_owned()).collect(),
            schemas,
        }
    }

    /// Every table and view, schema by schema.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.schemas.iter().flat_map(|schema| schema.tables.iter())
    }
}

/// Reads the catalog of `source`'s database: one connection (no retry, as `landfall check`),
/// in the dialect's read-only transaction. `schemas`: only these (default: every schema
/// but the system ones).
pub async fn discover(source: &SourceConfig, schemas: &[String]) -> Result<Catalog, DatabaseError> {
    let dialect = dialect(source);
    let mut connection = dialect.connect().await?;
    let rows = connection.discover(schemas).await?;
    Ok(Catalog::from_rows(source, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, class: TypeClass, nullable: bool) -> Column {
        Column {
            name: name.into(),
            type_name: class.dbt_type().into(),
            nullable,
            dbt_type: class.dbt_type(),
            class,
        }
    }

    #[test]
    fn cursors_are_ranked_by_name_then_nullability_then_precision() {
        let columns = [
            column("id", TypeClass::Integer, false),
            column("birthday", TypeClass::Date, false),
            column("created_at", TypeClass::Instant, false),
            column("last_change_seen", TypeClass::Instant, false),
            column("modified_at", TypeClass::Instant, true),
            column("updated_at", TypeClass::LocalDateTime, true),
            column("updated_on", TypeClass::Date, false),
        ];
        let ranked = candidates(&columns);
        let names: Vec<&str> = ranked.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(
            names,
            [
                "updated_on",
                "modified_at",
                "updated_at",
                "last_change_seen",
                "created_at",
                "birthday"
            ]
        );
        assert!(ranked[0].reason.contains("last-change"), "{}", ranked[0].reason);
        assert!(ranked[1].reason.contains("nullable"), "{}", ranked[1].reason);
        assert!(ranked[4].reason.contains("creation"), "{}", ranked[4].reason);
        assert!(ranked[4].recommended);
        assert!(!ranked[5].recommended, "an unrelated date is listed, never chosen");
    }

    #[test]
    fn database_types_map_to_the_dbt_column_types() {
        for (name, category, expected) in [
            ("int8", "N", "integer"),
            ("numeric", "N", "number"),
            ("money", "N", "number"),
            ("bool", "B", "boolean"),
            ("timestamptz", "D", "timestamp"),
            ("timestamp", "D", "timestamp"),
            ("date", "D", "date"),
            ("jsonb", "U", "json"),
            ("_int4", "A", "json"),
            ("uuid", "U", "string"),
            ("interval", "T", "string"),
        ] {
            assert_eq!(TypeClass::of_postgres(name, category).dbt_type(), expected, "{name}");
        }
        for (name, expected) in [
            ("bigint", "integer"),
            ("TINYINT", "integer"),
            ("decimal", "number"),
            ("datetime", "timestamp"),
            ("timestamp", "timestamp"),
            ("date", "date"),
            ("longtext", "string"),
            ("time", "string"),
            ("json", "json"),
        ] {
            assert_eq!(TypeClass::of_mysql(name).dbt_type(), expected, "{name}");
        }
        for kind in [
            TypeClass::Integer,
            TypeClass::Number,
            TypeClass::Boolean,
            TypeClass::Instant,
            TypeClass::LocalDateTime,
            TypeClass::Date,
            TypeClass::Json,
            TypeClass::String,
        ] {
            assert!(crate::config::COLUMN_TYPES.contains(&kind.dbt_type()));
        }
    }
}
