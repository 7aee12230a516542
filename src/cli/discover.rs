//! `landfall discover`: a database source's catalog as JSON, and with `--write-config` a
//! starter config. The starter copies `source:` and `landing:` from the config as written
//! (references such as `${env:DATABASE_URL}` unresolved, so no secret is ever written) and
//! proposes a stream per table that has a primary key, with the best cursor candidate and
//! the dbt column types read from the catalog.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::args::DiscoverArgs;
use super::fail;
use crate::config::{ConnectorConfig, Resolve};
use crate::error::Exit;
use crate::init::render::scalar;
use crate::source::database::discover::{Catalog, Table, TypeClass};

/// Runs `landfall discover`.
pub async fn discover(args: DiscoverArgs) -> Exit {
    let Some(path) = args.config.clone() else {
        return fail(
            "invalid config: no config given (--config or LANDFALL_CONFIG)",
            Exit::Usage,
        );
    };
    if let Some(out) = &args.write_config
        && out.exists()
        && !args.force
    {
        return fail(
            format_args!("{} exists; pass --force to overwrite it", out.display()),
            Exit::Usage,
        );
    }
    let (written, loaded) = match load(&path) {
        Ok(loaded) => loaded,
        Err(message) => return fail(message, Exit::Usage),
    };
    let source = &loaded.source;
    let catalog = match crate::source::database::discover::discover(source, &args.schemas).await {
        Ok(catalog) => catalog,
        Err(error) => {
            return fail(
                format_args!("discover failed: {}: {}", error.code.as_str(), error.message),
                Exit::for_error(error.code, error.retryable),
            );
        }
    };
    println!(
        "{}",
        crate::redact::scrub(&serde_json::to_string_pretty(&catalog).expect("the catalog serializes"))
    );
    let Some(out) = &args.write_config else {
        return Exit::Succeeded;
    };
    let starter = match starter_config(&written, &catalog) {
        Ok(starter) => starter,
        Err(message) => return fail(message, Exit::Failure),
    };
    if let Err(error) = write(out, &starter.text) {
        return fail(format_args!("cannot write {}: {error}", out.display()), Exit::Failure);
    }
    eprintln!(
        "landfall: wrote {}: {} stream(s), {} table(s) skipped (see its comments); next: `landfall check --config {}`",
        out.display(),
        starter.streams,
        starter.skipped,
        out.display()
    );
    Exit::Succeeded
}

/// The config as written (for the starter) and loaded with its references resolved (to
/// connect). Only `source:` and `landing:` count: the streams are what discover proposes,
/// so a config without any is accepted.
fn load(path: &Path) -> Result<(serde_json::Value, ConnectorConfig), String> {
    let invalid = |error: &dyn std::fmt::Display| format!("invalid config: {error}");
    let text = std::fs::read_to_string(path).map_err(|error| invalid(&format_args!("{}: {error}", path.display())))?;
    let written = crate::config::parse_as_written(&text).map_err(|error| invalid(&error))?;
    let kind = written
        .pointer("/source/type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("rest");
    if kind != "postgres" && kind != "mysql" {
        return Err(format!(
            "invalid config: source.type is `{kind}`; discover reads the catalog of a database source \
             (source.type: postgres or mysql)"
        ));
    }
    // A stand-in stream, so the config validates without streams of its own; it is never
    // read.
    let mut document = written.clone();
    if let Some(root) = document.as_object_mut() {
        root.insert(
            "streams".to_owned(),
            serde_json::json!([{"name": "discover", "table": "discover", "primary_key": ["id"]}]),
        );
    }
    let yaml = serde_yaml_ng::to_string(&document).map_err(|error| invalid(&error))?;
    let loaded = ConnectorConfig::from_yaml(&yaml, Resolve::References, &|name| std::env::var(name).ok())
        .map_err(|error| invalid(&error))?;
    Ok((written, loaded.config))
}

/// The starter config's text and what it holds.
struct Starter {
    text: String,
    streams: usize,
    skipped: usize,
}

/// How `start` and `format` are written for a cursor of this type: the earliest instant,
/// in the form the column's values land in (`docs/databases.md`).
fn cursor_start(class: TypeClass) -> (&'static str, Option<&'static str>) {
    match class {
        TypeClass::Date => ("1970-01-01", Some("date")),
        TypeClass::LocalDateTime => ("1970-01-01T00:00:00", Some("strftime:%Y-%m-%dT%H:%M:%S%.f")),
        _ => ("1970-01-01T00:00:00Z", None),
    }
}

/// Why a table gets no stream, if it gets none.
fn skip_reason(table: &Table) -> Option<&'static str> {
    if table.primary_key.is_empty() {
        Some("no primary key: a database stream reads in keyset chunks ordered by it")
    } else if [&table.schema, &table.name]
        .iter()
        .any(|part| part.is_empty() || part.contains(['.', '"', '`', '\0']))
    {
        Some("its schema or name holds `.`, `\"` or a backtick, which `table:` cannot name")
    } else if table.primary_key.iter().any(|column| column.starts_with('/')) {
        Some("a primary key column starts with `/`, which the config reads as a JSON pointer")
    } else {
        None
    }
}

/// `[a-z][a-z0-9_]*`, at most 64 characters, from a table's name.
fn stream_name(name: &str) -> String {
    let mut out: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "t_");
    }
    out.truncate(60);
    out
}

/// Stream names for `tables`: the table's name, or `schema_name` when two schemas hold
/// tables of one name, with a number added if that still repeats.
fn stream_names(tables: &[&Table]) -> Vec<String> {
    let plain: Vec<String> = tables.iter().map(|table| stream_name(&table.name)).collect();
    let mut taken = std::collections::HashSet::new();
    tables
        .iter()
        .zip(&plain)
        .map(|(table, name)| {
            let base = if plain.iter().filter(|other| *other == name).count() > 1 {
                stream_name(&format!("{}_{}", table.schema, table.name))
            } else {
                name.clone()
            };
            let mut candidate = base.clone();
            let mut number = 2;
            while !taken.insert(candidate.clone()) {
                candidate = format!("{base}_{number}");
                number += 1;
            }
            candidate
        })
        .collect()
}

/// A comment line, with control characters removed (a name from the catalog cannot end it
/// and start a key).
fn comment(out: &mut String, indent: &str, text: &str) {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let _ = writeln!(out, "{indent}# {clean}");
}

/// A top-level block of the config as written (`source:`, `landing:`), as YAML.
fn block(written: &serde_json::Value, key: &str) -> Result<Option<String>, String> {
    let Some(value) = written.get(key) else {
        return Ok(None);
    };
    serde_yaml_ng::to_string(&serde_json::json!({ key: value }))
        .map(Some)
        .map_err(|error| format!("cannot write the {key} block: {error}"))
}

/// The starter config: `source:` and `landing:` as written, a stream per table with a
/// primary key, the others listed in a comment. It is checked to load before it is written.
fn starter_config(written: &serde_json::Value, catalog: &Catalog) -> Result<Starter, String> {
    let tables: Vec<&Table> = catalog.tables().collect();
    let (kept, skipped): (Vec<&Table>, Vec<&Table>) = tables.iter().partition(|table| skip_reason(table).is_none());
    if kept.is_empty() {
        return Err(format!(
            "no --write-config: none of the {} table(s) and view(s) found has a primary key to read it by",
            tables.len()
        ));
    }
    let names = stream_names(&kept);
    let mut out = String::new();
    comment(
        &mut out,
        "",
        &format!(
            "Starter config written by `landfall discover` from the catalog of source {} ({}).",
            catalog.source, catalog.kind
        ),
    );
    comment(
        &mut out,
        "",
        "A stream per table with a primary key; cursors and column types come from the catalog.",
    );
    comment(
        &mut out,
        "",
        "Review it, then run `landfall check` with it. source and landing are copied as written.",
    );
    out.push_str("version: 1\n");
    if let Some(source) = block(written, "source")? {
        out.push_str(&source);
    }
    out.push_str("streams:\n");
    for (table, name) in kept.iter().zip(&names) {
        match table.cursor() {
            Some(cursor) => comment(
                &mut out,
                "  ",
                &format!(
                    "{} ({}): incremental by {}: {}",
                    table.qualified(),
                    table.kind,
                    cursor.column,
                    cursor.reason
                ),
            ),
            None => {
                let others: Vec<&str> = table
                    .cursor_candidates
                    .iter()
                    .map(|candidate| candidate.column.as_str())
                    .collect();
                let why = if others.is_empty() {
                    "no date/time column to use as a cursor".to_owned()
                } else {
                    format!(
                        "no column named like a change or creation time (date/time columns: {})",
                        others.join(", ")
                    )
                };
                comment(
                    &mut out,
                    "  ",
                    &format!("{} ({}): full refresh: {why}", table.qualified(), table.kind),
                );
            }
        }
        let _ = writeln!(out, "  - name: {name}");
        let _ = writeln!(out, "    table: {}", scalar(&table.qualified()));
        let key: Vec<String> = table.primary_key.iter().map(|column| scalar(column)).collect();
        let _ = writeln!(out, "    primary_key: [{}]", key.join(", "));
        if let Some(cursor) = table.cursor() {
            let (start, format) = cursor_start(cursor.class);
            out.push_str("    incremental:\n");
            let _ = writeln!(out, "      cursor_field: {}", scalar(&cursor.column));
            let _ = writeln!(out, "      start: {}", scalar_quoted(start));
            if let Some(format) = format {
                let _ = writeln!(out, "      format: {}", scalar_quoted(format));
            }
        }
        out.push_str("    columns:\n");
        for column in &table.columns {
            let _ = writeln!(out, "      {}: {}", scalar(&column.name), column.dbt_type);
        }
    }
    if let Some(landing) = block(written, "landing")? {
        out.push_str(&landing);
    }
    if !skipped.is_empty() {
        comment(&mut out, "", "Not streamed:");
        for table in &skipped {
            let reason = skip_reason(table).unwrap_or_default();
            comment(
                &mut out,
                "",
                &format!("  {} ({}): {reason}", table.qualified(), table.kind),
            );
        }
    }
    ConnectorConfig::from_yaml(&out, Resolve::SyntaxOnly, &|_| None)
        .map_err(|error| format!("the starter config does not load (a bug; please report it): {error}"))?;
    Ok(Starter {
        text: out,
        streams: kept.len(),
        skipped: skipped.len(),
    })
}

/// Always double-quoted: a start or format must stay a string whatever it looks like.
fn scalar_quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

fn write(path: &PathBuf, text: &str) -> std::io::Result<()> {
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::database::discover::{CatalogColumn, TypeClass};

    fn row(table: &str, column: &str, class: TypeClass, nullable: bool, key: Option<i64>) -> CatalogColumn {
        CatalogColumn {
            schema: "shop".into(),
            table: table.into(),
            kind: if table.starts_with('v') { "view" } else { "table" }.into(),
            column: column.into(),
            type_name: class.dbt_type().into(),
            class,
            nullable,
            key_position: key,
        }
    }

    #[test]
    fn the_starter_copies_source_and_landing_as_written_and_streams_keyed_tables() {
        let text = "version: 1\nsource:\n  name: shop\n  type: postgres\n  url: ${env:DATABASE_URL}\nlanding:\n  url: file:///tmp/landing\n";
        let written = crate::config::parse_as_written(text).unwrap();
        let source: crate::http::config::SourceConfig = serde_json::from_value(written["source"].clone()).unwrap();
        let catalog = Catalog::from_rows(
            &source,
            vec![
                row("Order Lines", "line", TypeClass::Integer, false, Some(2)),
                row("Order Lines", "order_id", TypeClass::Integer, false, Some(1)),
                row("Order Lines", "updated_at", TypeClass::LocalDateTime, true, None),
                row("log", "at", TypeClass::Instant, false, None),
                row("v_orders", "id", TypeClass::Integer, true, None),
            ],
        );
        let starter = starter_config(&written, &catalog).unwrap();
        let text = &starter.text;
        assert!(text.contains("url: ${env:DATABASE_URL}"), "{text}");
        assert!(
            text.contains("- name: order_lines\n    table: \"shop.Order Lines\"\n    primary_key: [order_id, line]"),
            "{text}"
        );
        assert!(text.contains("cursor_field: updated_at\n      start: \"1970-01-01T00:00:00\"\n      format: \"strftime:%Y-%m-%dT%H:%M:%S%.f\""), "{text}");
        assert!(text.contains("      updated_at: timestamp\n"), "{text}");
        assert!(text.contains("#   shop.log (table): no primary key"), "{text}");
        assert!(text.contains("#   shop.v_orders (view): no primary key"), "{text}");
        assert_eq!((starter.streams, starter.skipped), (1, 2));
        let loaded = ConnectorConfig::from_yaml(text, Resolve::SyntaxOnly, &|_| None).unwrap();
        assert_eq!(loaded.config.streams[0].columns["line"], "integer");
    }

    #[test]
    fn stream_names_are_identifiers_and_distinct() {
        let table = |schema: &str, name: &str| Table {
            schema: schema.into(),
            name: name.into(),
            kind: "table".into(),
            columns: Vec::new(),
            primary_key: vec!["id".into()],
            cursor_candidates: Vec::new(),
        };
        let tables = [table("a", "Orders"), table("b", "orders"), table("a", "9lives")];
        let refs: Vec<&Table> = tables.iter().collect();
        assert_eq!(stream_names(&refs), ["a_orders", "b_orders", "t_9lives"]);
    }
}
