"""Set-up for the simulated month: a fresh AIRFLOW_HOME with a migrated database, the repo's
DAGs folder, the landfall binary (LANDFALL_BIN) and the dbt venv (.tools/dbt).

Run by tests/airflow/run.sh in the Airflow 3 venv after the DAG suite; by hand:

    .tools/airflow3/bin/python -m pytest tests/simulation -q -s
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DAGS = ROOT / "dags"
LANDFALL_BIN = Path(os.environ.get("LANDFALL_BIN") or ROOT / "target" / "debug" / "landfall")
DBT_BIN_DIR = Path(os.environ.get("LANDFALL_DBT_BIN_DIR") or ROOT / ".tools" / "dbt" / "bin")

sys.path.insert(0, str(HERE))


def _prepare_environment() -> None:
    given = os.environ.get("LANDFALL_TEST_SCRATCH")
    scratch = Path(given) if given else Path(tempfile.mkdtemp(prefix="landfall-simulation-"))
    home = scratch / "simulation-airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    for name in ("LANDFALL_AIRFLOW_MODE", "LANDFALL_CONFIG_DIR", "LANDFALL_DBT_COMMAND", "LANDFALL_WORKDIR"):
        os.environ.pop(name, None)


_prepare_environment()


def airflow_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    home = Path(os.environ["AIRFLOW_HOME"])
    result = airflow_cli("db", "migrate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home


@pytest.fixture(scope="session")
def landfall_bin() -> Path:
    if not (LANDFALL_BIN.is_file() and os.access(LANDFALL_BIN, os.X_OK)):
        pytest.skip(f"landfall binary not found at {LANDFALL_BIN} (set LANDFALL_BIN or build it)")
    if not (DBT_BIN_DIR / "dbt").is_file():
        pytest.skip(f"dbt not found in {DBT_BIN_DIR} (tests/airflow/run.sh installs it)")
    return LANDFALL_BIN
