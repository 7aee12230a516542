//! What a database stream reads ([`ReadSpec`]: a table or a query, its columns, its keyset)
//! and the bounds of one chunk ([`Bounds`]), the same for every database.

use crate::config::StreamConfig;
use crate::cursor::CursorFormat;
use crate::source::windows::Window;

use super::DatabaseError;

/// A column the table or query returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The server's type, as written in a cast (`int8`, `timestamptz`, `decimal(12,2)`).
    pub type_name: String,
}

/// What a stream reads.
#[derive(Clone, Debug)]
pub struct ReadSpec {
    pub relation: Relation,
    /// `select`: the columns of the table to read (empty: all).
    pub select: Vec<String>,
    /// The columns chunks are ordered and resumed by: the cursor column (incremental), then
    /// the primary key.
    pub keyset: Vec<String>,
    /// The cursor column, first of `keyset`, when incremental.
    pub cursor: Option<String>,
    /// `incremental.mode: xmin` (PostgreSQL tables): rows are filtered by the transaction
    /// that last wrote them, and chunks ordered by the primary key alone.
    pub xmin: bool,
}

#[derive(Clone, Debug)]
pub enum Relation {
    /// `schema.name` (schema optional).
    Table {
        schema: Option<String>,
        name: String,
    },
    Query(String),
}

impl ReadSpec {
    pub fn new(stream: &StreamConfig) -> Self {
        let relation = match (&stream.table, &stream.query) {
            (_, Some(query)) => Relation::Query(query.trim().trim_end_matches(';').to_owned()),
            (Some(table), None) => match table.split_once('.') {
                Some((schema, name)) => Relation::Table {
                    schema: Some(schema.to_owned()),
                    name: name.to_owned(),
                },
                None => Relation::Table {
                    schema: None,
                    name: table.clone(),
                },
            },
            (None, None) => Relation::Query(String::new()),
        };
        let cursor = stream
            .incremental
            .as_ref()
            .and_then(|incremental| incremental.cursor_column())
            .map(str::to_owned);
        let mut keyset: Vec<String> = cursor.iter().cloned().collect();
        keyset.extend(
            stream
                .primary_key
                .iter()
                .filter(|key| Some(*key) != cursor.as_ref())
                .cloned(),
        );
        Self {
            relation,
            select: stream.select.clone(),
            keyset,
            cursor,
            xmin: stream
                .incremental
                .as_ref()
                .is_some_and(|incremental| incremental.is_xmin()),
        }
    }

    /// What the stream reads, for `_source_endpoint`: `table <schema.name>`, or `query
    /// sha256:<first 16 hex digits>` (a query's text may be long, and is in the config).
    pub fn endpoint(&self) -> String {
        match &self.relation {
            Relation::Table {
                schema: Some(schema),
                name,
            } => format!("table {schema}.{name}"),
            Relation::Table { schema: None, name } => format!("table {name}"),
            Relation::Query(query) => {
                let hash = crate::hash::sha256_hex(query.as_bytes());
                format!("query sha256:{}", &hash[..16])
            }
        }
    }

    /// The keyset columns must be among those returned, and names must not repeat (a row's
    /// JSON would hold a key twice).
    pub fn check_columns(&self, columns: &[Column]) -> Result<(), DatabaseError> {
        let mut seen = std::collections::HashSet::new();
        for column in columns {
            if !seen.insert(column.name.as_str()) {
                return Err(DatabaseError::config(format!(
                    "{} returns the column `{}` twice; give the columns distinct names",
                    self.endpoint(),
                    column.name
                )));
            }
        }
        for key in &self.keyset {
            if !seen.contains(key.as_str()) {
                let role = if Some(key) == self.cursor.as_ref() {
                    "cursor column (incremental.cursor_field)"
                } else {
                    "primary key column"
                };
                return Err(DatabaseError::config(format!(
                    "{} returns no {role} `{key}`; it returns: {}",
                    self.endpoint(),
                    columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The relation the stream's statements select from: the query, or `SELECT <select or
    /// *> FROM <table>` with identifiers quoted by `quote` (`"` or `` ` ``).
    pub fn relation_sql(&self, quote: char) -> String {
        match &self.relation {
            Relation::Query(query) => query.clone(),
            Relation::Table { schema, name } => {
                let table = match schema {
                    Some(schema) => format!("{}.{}", quote_identifier(schema, quote), quote_identifier(name, quote)),
                    None => quote_identifier(name, quote),
                };
                let columns = if self.select.is_empty() {
                    "*".to_owned()
                } else {
                    self.select
                        .iter()
                        .map(|column| quote_identifier(column, quote))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("SELECT {columns} FROM {table}")
            }
        }
    }

    /// The keyset columns with their types, in keyset order.
    pub fn keyset_columns<'a>(&self, columns: &'a [Column]) -> Vec<&'a Column> {
        self.keyset
            .iter()
            .filter_map(|key| columns.iter().find(|column| &column.name == key))
            .collect()
    }
}

/// The bounds of one chunk: the window (lower inclusive, upper exclusive, in the cursor's
/// format) and the keyset values of the last row read, each a text parameter.
#[derive(Clone, Debug, Default)]
pub struct Bounds {
    pub lower: Option<String>,
    pub upper: Option<String>,
    pub after: Option<Vec<String>>,
    /// `mode: xmin`: the full transaction id a row's 32-bit xmin is widened against (the
    /// snapshot's xmax), written in the statement; `lower` is then a full transaction id.
    pub xid_horizon: Option<u64>,
}

impl Bounds {
    pub fn new(window: &Window, format: &CursorFormat, after: Option<Vec<String>>) -> Self {
        Self {
            lower: window.lower.as_ref().map(|cursor| format.render(cursor)),
            upper: window.upper.as_ref().map(|cursor| format.render(cursor)),
            after,
            xid_horizon: None,
        }
    }

    /// The statement's parameters, in the order [`super::Dialect::chunk_sql`] numbers them:
    /// lower, upper, then the keyset values.
    pub fn params(&self) -> Vec<String> {
        self.lower
            .iter()
            .chain(self.upper.iter())
            .chain(self.after.iter().flatten())
            .cloned()
            .collect()
    }
}

/// The aliases of a chunk's subquery and rendered row: names no real column is likely to
/// have (a column named like an alias would make references to it ambiguous).
pub const SUBQUERY: &str = "_landfall_source";
pub const ROW: &str = "_landfall_row";

/// Ends a chunk's statement: its `conditions` (joined by `AND`), then ordered by `order`
/// (the keyset columns, as written in the statement) and limited to `limit` rows.
pub fn finish_chunk(sql: &mut String, conditions: &[String], order: &[String], limit: u32) {
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", order.join(", ")));
}

/// Quotes an identifier with `quote` (`"` or `` ` ``), doubling the quote inside.
pub fn quote_identifier(name: &str, quote: char) -> String {
    let doubled = format!("{quote}{quote}");
    format!("{quote}{}{quote}", name.replace(quote, &doubled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_stream;

    #[test]
    fn the_keyset_is_the_cursor_then_the_primary_key() {
        let stream = test_stream(
            r#", "table": "public.orders", "incremental": {"cursor_field": "updated_at", "start": "2024-01-01T00:00:00Z"}"#,
        );
        let spec = ReadSpec::new(&stream);
        assert_eq!(spec.keyset, ["updated_at", "id"]);
        assert_eq!(spec.endpoint(), "table public.orders");
        let columns = [Column {
            name: "id".into(),
            type_name: "int8".into(),
        }];
        let error = spec.check_columns(&columns).unwrap_err();
        assert!(error.message.contains("no cursor column"), "{error}");
    }

    #[test]
    fn a_query_is_named_by_its_hash_and_identifiers_are_quoted() {
        let stream = test_stream(r#", "query": "select 1 as id;""#);
        let spec = ReadSpec::new(&stream);
        assert!(spec.endpoint().starts_with("query sha256:"), "{}", spec.endpoint());
        assert_eq!(spec.endpoint().len(), "query sha256:".len() + 16);
        assert_eq!(quote_identifier(r#"we"ird"#, '"'), r#""we""ird""#);
        assert_eq!(quote_identifier("a`b", '`'), "`a``b`");
    }
}
