#!/usr/bin/env bash
# Airflow DAG tests (dags/): the same pytest suite under Airflow 3 and Airflow 2.10, each in its
# own venv (.tools/airflow3, .tools/airflow2, installed here, idempotently) with a fresh
# AIRFLOW_HOME. The end-to-end demo test also needs the landfall binary (LANDFALL_BIN, default
# target/debug/landfall; skipped without it) and dbt (.tools/dbt, installed here as
# tests/dbt/run.sh installs it).
#
# Then, under Airflow 3, the simulated month (tests/simulation; LANDFALL_SIMULATION=0 skips it).
#
#   tests/airflow/run.sh                      # both Airflow versions
#   AIRFLOW_VERSIONS=3 tests/airflow/run.sh   # one; extra arguments go to pytest
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="$ROOT/.tools"
VERSIONS="${AIRFLOW_VERSIONS:-3 2}"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/landfall-airflow.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

log() { echo "tests/airflow: $*" >&2; }

# shellcheck source=../tools/tools.sh
source "$ROOT/tests/tools/tools.sh"

install_venv() {  # name (a lock in tests/tools), check (python code)
  local name="$1" check="$2" venv="$TOOLS/$1"
  landfall_tools_venv "$name" "$venv" || { log "installing tests/tools/$name.txt failed"; exit 1; }
  "$venv/bin/python" -c "$check" || { log "$venv is not usable after install"; exit 1; }
}

airflow_check() {  # major version
  cat <<PY
import importlib.metadata as md
import pytest, yaml  # noqa: F401
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: F401
version = md.version("apache-airflow")
assert version.startswith("$1"), version
PY
}

for version in $VERSIONS; do
  case "$version" in
    3) install_venv airflow3 "$(airflow_check 3.)"
       landfall_tools_report airflow3 "$TOOLS/airflow3" apache-airflow \
         apache-airflow-providers-cncf-kubernetes apache-airflow-providers-openlineage pytest ;;
    2) install_venv airflow2 "$(airflow_check 2.10.)"
       landfall_tools_report airflow2 "$TOOLS/airflow2" apache-airflow \
         apache-airflow-providers-cncf-kubernetes pytest ;;
    *) log "unknown Airflow version '$version' in AIRFLOW_VERSIONS (use 3 and/or 2)"; exit 2 ;;
  esac
done

# dbt for the end-to-end test: the same lock (tests/tools/dbt.txt) and check as tests/dbt/run.sh,
# so that the two scripts share one venv instead of reinstalling it in turn.
install_venv dbt "$(cat <<'PY'
import importlib.metadata as md, shutil, sys
import duckdb, boto3, pytest, duckdb_ext  # noqa: F401
assert duckdb.__version__ == "1.4.4", duckdb.__version__
assert md.version("dbt-core").startswith("1.11."), md.version("dbt-core")
assert md.version("dbt-duckdb").startswith("1.11"), md.version("dbt-duckdb")
assert md.version("duckdb-ext-httpfs") == "1.4.4.20260205"
import os; bin_dir = os.path.dirname(sys.executable)
assert os.access(os.path.join(bin_dir, "dbt"), os.X_OK) and os.access(os.path.join(bin_dir, "moto_server"), os.X_OK)
PY
)"
landfall_tools_report dbt "$TOOLS/dbt" dbt-core dbt-duckdb duckdb moto

# The binary may be rebuilt while the tests run: test a copy.
LANDFALL_BIN="${LANDFALL_BIN:-$ROOT/target/debug/landfall}"
if [[ -x "$LANDFALL_BIN" ]]; then
  cp "$LANDFALL_BIN" "$SCRATCH/landfall"
  export LANDFALL_BIN="$SCRATCH/landfall"
else
  log "no landfall binary at $LANDFALL_BIN: the end-to-end demo test will be skipped"
  export LANDFALL_BIN
fi

status=0
for version in $VERSIONS; do
  log "Airflow $version"
  home="$SCRATCH/airflow$version/home"
  mkdir -p "$home"
  set +e
  (
    cd "$ROOT"
    LANDFALL_TEST_AIRFLOW_HOME="$home" LANDFALL_TEST_SCRATCH="$SCRATCH/airflow$version" \
      PYTHONDONTWRITEBYTECODE=1 \
      "$TOOLS/airflow$version/bin/python" -m pytest "$HERE" -q -rs -p no:cacheprovider "$@"
  )
  rc=$?
  set -e
  if [[ $rc -eq 5 ]]; then
    log "Airflow $version: pytest collected no tests, which counts as a failure"
  fi
  if [[ $rc -ne 0 ]]; then
    log "Airflow $version: FAILED (pytest exit $rc)"
    status=1
  fi
done

# The simulated month (tests/simulation, issue 16): the shipped DAG factory under Airflow 3
# over 30 simulated days of a loopback vendor API, the real binary, then dbt. Airflow 3 only
# (CI time); LANDFALL_SIMULATION=0 skips it.
if [[ " $VERSIONS " == *" 3 "* && "${LANDFALL_SIMULATION:-1}" != 0 ]]; then
  log "simulated month (Airflow 3)"
  started=$SECONDS
  set +e
  (
    cd "$ROOT"
    LANDFALL_TEST_SCRATCH="$SCRATCH/simulation" LANDFALL_DBT_BIN_DIR="$TOOLS/dbt/bin" PYTHONDONTWRITEBYTECODE=1 \
      LANDFALL_SIMULATION_SUMMARY="$SCRATCH/simulation-summary.json" \
      "$TOOLS/airflow3/bin/python" -m pytest "$ROOT/tests/simulation" -q -rsx -p no:cacheprovider
  )
  rc=$?
  set -e
  if [[ -f "$SCRATCH/simulation-summary.json" ]]; then
    log "simulated month summary:"
    cat "$SCRATCH/simulation-summary.json" >&2
  fi
  log "simulated month: pytest exit $rc after $((SECONDS - started)) s"
  if [[ $rc -ne 0 ]]; then
    status=1
  fi
fi
exit "$status"
