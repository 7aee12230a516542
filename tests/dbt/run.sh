#!/usr/bin/env bash
# dbt project tests: dbt build / source freshness over landed data (fixture writer, the real
# `landfall run`, and the same data in a moto S3 emulator), plus the generated-sources format.
# Installs its tools into .tools/dbt (idempotent). Extra arguments go to pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/dbt"
export LANDFALL_BIN="${LANDFALL_BIN:-$ROOT/target/debug/landfall}"

PACKAGES=(
  "dbt-core~=1.11.0"
  "dbt-duckdb~=1.11"
  "duckdb==1.4.4"
  "duckdb-ext-httpfs==1.4.4.20260205"
  pytest
  "moto[server]"
  boto3
)

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

if ! venv_ok; then
  echo "tests/dbt: installing dbt, duckdb and moto into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
  venv_ok || { echo "tests/dbt: $VENV is not usable after install" >&2; exit 1; }
fi

cd "$ROOT"
exec "$VENV/bin/python" -m pytest tests/dbt -q -rs -p no:cacheprovider "$@"
