"""Reference implementation of the file `landfall dbt-sources` writes (dbt/README.md,
"Generated sources format"). The Rust command must produce the same bytes for the same
config; test_sources_format.py pins this against dbt/models/sources/demo/demo.yml.
"""

from __future__ import annotations

import json
import math
import re

DEFAULT_WARN_AFTER_SECONDS = 26 * 3600
DEFAULT_ERROR_AFTER_SECONDS = 50 * 3600

ENVELOPE_TYPES = [
    ("_source_system", "VARCHAR"),
    ("_source_object", "VARCHAR"),
    ("_source_endpoint", "VARCHAR"),
    ("_source_record_id", "VARCHAR"),
    ("_source_updated_at", "VARCHAR"),
    ("_extracted_at", "TIMESTAMPTZ"),
    ("_loaded_at", "TIMESTAMPTZ"),
    ("_run_id", "VARCHAR"),
    ("_connector_version", "VARCHAR"),
    ("_tenant", "VARCHAR"),
    ("_environment", "VARCHAR"),
    ("_payload_sha256", "VARCHAR"),
    ("_page", "BIGINT"),
    ("_raw", "VARCHAR"),
]

MANIFEST_TYPES = [
    ("manifest_version", "BIGINT"),
    ("run_id", "VARCHAR"),
    ("source_system", "VARCHAR"),
    ("tenant", "VARCHAR"),
    ("environment", "VARCHAR"),
    ("landing_url", "VARCHAR"),
    ("connector", "STRUCT(name VARCHAR, version VARCHAR)"),
    ("config_sha256", "VARCHAR"),
    ("started_at", "TIMESTAMPTZ"),
    ("finished_at", "TIMESTAMPTZ"),
    ("duration_seconds", "DOUBLE"),
    ("status", "VARCHAR"),
    (
        "streams",
        "STRUCT(name VARCHAR, sync_mode VARCHAR, cursor_start VARCHAR, cursor_end VARCHAR, "
        "pages BIGINT, requests BIGINT, retries BIGINT, rows_read BIGINT, rows_written BIGINT, "
        "duplicate_rows BIGINT, dead_letter_rows BIGINT, bytes_written BIGINT, lag_seconds DOUBLE, "
        "status VARCHAR, error STRUCT(code VARCHAR, message VARCHAR, retryable BOOLEAN), "
        "files STRUCT(path VARCHAR, rows BIGINT, bytes BIGINT, sha256 VARCHAR)[])[]",
    ),
]

# (name, description, tests) in output order; tests are rendered by envelope_column().
ENVELOPE_COLUMNS = [
    ("_source_system", "Source name from the connector config.", ["not_null", "accepted_source"]),
    ("_source_object", "Stream name.", ["not_null", "accepted_stream"]),
    ("_source_endpoint", "Method and path of the request that returned the record.", ["not_null"]),
    ("_source_record_id", "Primary key as text; a composite key is a JSON array.", ["not_null_if_key"]),
    ("_source_updated_at", "The record's cursor value as the source gave it, or null.", []),
    ("_extracted_at", "When the page holding the record arrived (UTC).", ["not_null"]),
    ("_loaded_at", "When landfall wrote the line (UTC).", ["not_null"]),
    ("_run_id", "Id of the landfall run (UUIDv7).", ["not_null"]),
    ("_connector_version", "Version of landfall that landed the record.", ["not_null"]),
    ("_tenant", "Tenant from the connector config, or null.", []),
    ("_environment", "Environment from the connector config, or null.", []),
    ("_payload_sha256", "Hex SHA-256 of the bytes of _raw.", ["not_null", "sha256"]),
    ("_page", "Page sequence number within the stream's run, from 1.", ["not_null"]),
    ("_raw", "The record exactly as the source sent it (JSON text).", ["not_null"]),
    ("extracted_date", "Partition: UTC date the run started.", []),
    ("run_id", "Partition: id of the run that wrote the file.", []),
    ("filename", "Full path of the part file holding the row.", []),
]

PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_/.-]*$")
YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"}


def scalar(value: str) -> str:
    """A name as a YAML scalar: plain when unambiguous, else a JSON string."""
    if PLAIN.match(value) and value.lower() not in YAML_WORDS:
        return value
    return quoted(value)


def quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def flow_list(values: list[str]) -> str:
    return "[" + ", ".join(scalar(v) for v in values) + "]"


def duckdb_struct(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in pairs) + "}"


def parse_duration(text: str | int | float) -> int:
    """Config durations: a number of seconds or `<number><unit>` with unit s, m, h or d."""
    if isinstance(text, (int, float)):
        return int(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", text)
    if not match:
        raise ValueError(f"bad duration {text!r}")
    number, unit = float(match.group(1)), match.group(2)
    return math.ceil(number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def threshold(seconds: int) -> str:
    """Whole hours as hours, anything else as minutes rounded up."""
    if seconds % 3600 == 0:
        return f"{{count: {seconds // 3600}, period: hour}}"
    return f"{{count: {math.ceil(seconds / 60)}, period: minute}}"


JSON_SCHEMA_TYPES = {"integer": "integer", "number": "number", "boolean": "boolean", "object": "json", "array": "json"}


def stream_columns(stream: dict) -> dict[str, str]:
    """`columns` from the config, else from the JSON Schema's top-level properties."""
    if stream.get("columns"):
        return dict(stream["columns"])
    schema = stream.get("schema")
    if not isinstance(schema, dict) or "properties" not in schema:
        return {}
    columns = {}
    for name, prop in schema["properties"].items():
        kinds = prop.get("type", "string")
        kinds = [k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null"] or ["string"]
        kind = kinds[0]
        if kind == "string":
            columns[name] = {"date-time": "timestamp", "date": "date"}.get(prop.get("format"), "string")
        else:
            columns[name] = JSON_SCHEMA_TYPES.get(kind, "json")
    return columns


def json_literal(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def with_deletes_streams(streams: list[dict]) -> list[dict]:
    """Each stream followed by its `deletes` companion `<name>__deletes` (docs/contract.md §2)."""
    expanded = []
    for stream in streams:
        expanded.append(stream)
        deletes = stream.get("deletes")
        if deletes:
            expanded.append(
                {
                    "name": f"{stream['name']}__deletes",
                    "description": f"Records removed from stream `{stream['name']}`, listed by its deletes endpoint.",
                    "primary_key": deletes["key"],
                    "incremental": deletes.get("incremental"),
                }
            )
    return expanded


def render_sources(config: dict) -> str:
    source = config["source"]["name"]
    streams = with_deletes_streams(config["streams"])
    gzip = (config.get("landing") or {}).get("compression", "gzip") != "none"
    part_glob = "**/*.jsonl.gz" if gzip else "**/*.jsonl"
    names = [s["name"] for s in streams]
    out: list[str] = []
    w = out.append
    w(f"# Generated by `landfall dbt-sources` from the config of source `{source}`. Do not edit: re-run it.")
    w("version: 2")
    w("")
    w("sources:")
    w(f"  - name: {scalar(source)}")
    w(
        "    description: "
        + quoted(
            config["source"].get("description")
            or f"Records landfall landed from source `{source}`, read where LANDFALL_LANDING_URL points "
            "(default file://../landing)."
        )
    )
    w("    loader: landfall")
    w("    config:")
    w("      loaded_at_field: _loaded_at")
    w("      freshness:")
    w(f"        warn_after: {threshold(DEFAULT_WARN_AFTER_SECONDS)}")
    w(f"        error_after: {threshold(DEFAULT_ERROR_AFTER_SECONDS)}")
    w("      meta:")
    w(
        "        landfall_landing_root: \"{{ env_var('LANDFALL_LANDING_URL', 'file://../landing')"
        ".rstrip('/') | replace('file://', '', 1) }}\""
    )
    w("    tables:")
    for stream in streams:
        name = stream["name"]
        primary_key = list(stream.get("primary_key") or [])
        incremental = stream.get("incremental") or None
        cursor_field = incremental.get("cursor_field") if incremental else None
        columns = stream_columns(stream)
        marker = stream.get("delete_marker")
        w(f"      - name: {scalar(name)}")
        w(
            "        description: "
            + quoted(
                stream.get("description")
                or f"Stream `{name}` of source `{source}`: one row per landed record version; "
                "`_raw` holds the record as the API sent it."
            )
        )
        w("        config:")
        if "freshness" in stream:
            freshness = stream["freshness"]
            if freshness is None:
                w("          freshness: null")
            else:
                w("          freshness:")
                if freshness.get("warn_after") is not None:
                    w(f"            warn_after: {threshold(parse_duration(freshness['warn_after']))}")
                if freshness.get("error_after") is not None:
                    w(f"            error_after: {threshold(parse_duration(freshness['error_after']))}")
        w("          meta:")
        w("            formatter: template")
        location = (
            f"read_json_auto('${{landfall_landing_root}}/{source}/{name}/{part_glob}', "
            "format = 'newline_delimited', hive_partitioning = true, "
            "hive_types = {'extracted_date': 'DATE', 'run_id': 'VARCHAR'}, filename = true, "
            f"columns = {duckdb_struct(ENVELOPE_TYPES)})"
        )
        w(f"            external_location: {quoted(location)}")
        w("            landfall:")
        w(f"              source: {scalar(source)}")
        w(f"              stream: {scalar(name)}")
        w(f"              path: {scalar(source + '/' + name)}")
        w(f"              files: {quoted(part_glob)}")
        w("              format: jsonl")
        w(f"              compression: {'gzip' if gzip else 'none'}")
        w("              partitions: [extracted_date, run_id]")
        w(f"              sync_mode: {'incremental' if incremental else 'full_refresh'}")
        w(f"              primary_key: {flow_list(primary_key)}")
        w(f"              cursor_field: {scalar(cursor_field) if cursor_field else 'null'}")
        w(
            "              columns: {"
            + ", ".join(f"{scalar(k)}: {scalar(v)}" for k, v in columns.items())
            + "}"
        )
        if marker:
            parts = [f"field: {scalar(marker['field'])}"]
            if "value" in marker:
                parts.append(f"value: {json_literal(marker['value'])}")
            w("              delete_marker: {" + ", ".join(parts) + "}")
        else:
            w("              delete_marker: null")
        w("        data_tests:")
        w("          - landfall.landfall_no_duplicate_landed_rows")
        w("        columns:")
        # Row-level tests are on the staging models (`landfall dbt-sources --staging`).
        for column, description, _tests in ENVELOPE_COLUMNS:
            w(f"          - name: {column}")
            w(f"            description: {quoted(description)}")
    w("      - name: _manifests")
    w(
        "        description: "
        + quoted(
            f"Run manifests of source `{source}`: one row per committed run, with per-stream counts "
            "and the files each stream wrote."
        )
    )
    w("        config:")
    w("          loaded_at_field: finished_at")
    w("          meta:")
    w("            formatter: template")
    location = (
        f"read_json_auto('${{landfall_landing_root}}/{source}/_manifests/**/*.json', "
        "format = 'newline_delimited', hive_partitioning = true, "
        "hive_types = {'extracted_date': 'DATE'}, filename = true, "
        f"columns = {duckdb_struct(MANIFEST_TYPES)})"
    )
    w(f"            external_location: {quoted(location)}")
    w("            landfall:")
    w(f"              source: {scalar(source)}")
    w("              stream: _manifests")
    w(f"              path: {scalar(source + '/_manifests')}")
    w('              files: "**/*.json"')
    w("              format: jsonl")
    w("              compression: none")
    w("              partitions: [extracted_date]")
    w("        data_tests:")
    for test in ("landfall_manifest_rows_reconcile", "landfall_manifest_files_exist"):
        w(f"          - landfall.{test}:")
        w("              arguments:")
        w(f"                source_name: {scalar(source)}")
        w(f"                streams: {flow_list(names)}")
    w("        columns:")
    w("          - name: run_id")
    w(f"            description: {quoted('Id of the run (UUIDv7); matches _run_id of the rows it landed.')}")
    w("            data_tests:")
    w("              - not_null")
    w("              - unique")
    w("          - name: source_system")
    w(f"            description: {quoted('Source name from the connector config.')}")
    w("            data_tests:")
    w("              - accepted_values:")
    w("                  arguments:")
    w(f"                    values: [{quoted(source)}]")
    w("          - name: status")
    w(f"            description: {quoted('Run outcome: succeeded, partial, failed or cancelled.')}")
    w("            data_tests:")
    w("              - not_null")
    w("              - accepted_values:")
    w("                  arguments:")
    w('                    values: ["succeeded", "partial", "failed", "cancelled"]')
    w("          - name: streams")
    w(
        "            description: "
        + quoted(
            "Per stream: name, sync_mode, cursors, counts, status, error and files [{path, rows, bytes, "
            "sha256}] (paths relative to the landing root)."
        )
    )
    w("          - name: finished_at")
    w(f"            description: {quoted('When the run finished (UTC).')}")
    w("            data_tests:")
    w("              - not_null")
    return "\n".join(out) + "\n"


# The demo connector config as the brief describes config-examples/demo.yaml (only the keys
# the generator reads).
DEMO_CONFIG = {
    "version": 1,
    "source": {"name": "demo", "description": "Built-in sample shop API served by `landfall demo`"},
    "streams": [
        {
            "name": "customers",
            "description": "Customers, cursor-paginated, incremental on updated_at",
            "primary_key": ["id"],
            "incremental": {"cursor_field": "updated_at"},
            "columns": {
                "id": "integer",
                "name": "string",
                "email": "string",
                "country": "string",
                "created_at": "timestamp",
                "updated_at": "timestamp",
            },
        },
        {
            "name": "orders",
            "description": "Orders, paginated by RFC 8288 Link headers, incremental on updated_at",
            "primary_key": ["id"],
            "incremental": {"cursor_field": "updated_at"},
            "columns": {
                "id": "string",
                "customer_id": "integer",
                "amount": "number",
                "currency": "string",
                "status": "string",
                "updated_at": "timestamp",
            },
        },
        {
            "name": "products",
            "description": "Product catalogue, offset-paginated, full refresh",
            "primary_key": ["sku"],
            "columns": {"sku": "string", "title": "string", "price": "number", "active": "boolean"},
        },
    ],
}
