#!/usr/bin/env bash
# dbt project tests: dbt build / source freshness over landed data (fixture writer, the real
# `landfall run`, and the same data in a moto S3 emulator), the generated-sources format, and
# `dbt parse` under the Snowflake, BigQuery, Databricks and Redshift adapters.
# Installs its tools into .tools/dbt (idempotent). Extra arguments go to pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/dbt"
export LANDFALL_BIN="${LANDFALL_BIN:-$ROOT/target/debug/landfall}"

# shellcheck source=../tools/tools.sh
source "$ROOT/tests/tools/tools.sh"

venv_ok() {
  [[ -x "$VENV/bin/python" && -x "$VENV/bin/dbt" && -x "$VENV/bin/moto_server" ]] || return 1
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as md
import duckdb, boto3, pytest, duckdb_ext  # noqa: F401
assert duckdb.__version__ == "1.4.4", duckdb.__version__
assert md.version("dbt-core").startswith("1.11."), md.version("dbt-core")
assert md.version("dbt-duckdb").startswith("1.11"), md.version("dbt-duckdb")
assert md.version("duckdb-ext-httpfs") == "1.4.4.20260205"
PY
}

landfall_tools_venv dbt "$VENV" || { echo "tests/dbt: installing tests/tools/dbt.txt failed" >&2; exit 1; }
venv_ok || { echo "tests/dbt: $VENV is not usable after install" >&2; exit 1; }
landfall_tools_report dbt "$VENV" dbt-core dbt-duckdb duckdb duckdb-ext-httpfs moto boto3

# `dbt parse` under each warehouse adapter (test_adapters.py), in a venv of its own.
ADAPTERS_VENV="$ROOT/.tools/dbt-adapters"
landfall_tools_venv dbt-adapters "$ADAPTERS_VENV" || { echo "tests/dbt: installing tests/tools/dbt-adapters.txt failed" >&2; exit 1; }
landfall_tools_report dbt-adapters "$ADAPTERS_VENV" dbt-core dbt-snowflake dbt-bigquery dbt-databricks dbt-redshift
export LANDFALL_DBT_ADAPTERS_VENV="$ADAPTERS_VENV"

cd "$ROOT"
# test_database_source.py needs the database suite's PostgreSQL: tests/database/run.sh runs it.
exec "$VENV/bin/python" -m pytest tests/dbt -q -rs -p no:cacheprovider \
  --ignore=tests/dbt/test_database_source.py "$@"
