"""Shared set-up for the Airflow DAG tests; run by tests/airflow/run.sh in each Airflow venv.

Everything Airflow reads from the environment is set here, before any test imports Airflow:
a fresh AIRFLOW_HOME (unless run.sh gave one), the repo's dags folder, no example DAGs, and
a kubeconfig whose API server is a loopback port nobody listens on, so that the pods a
KubernetesPodOperator would create can be built without a cluster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DAGS = ROOT / "dags"
FIXTURES = HERE / "fixtures"
FIXTURE_CONFIGS = FIXTURES / "configs"
CONFIG_EXAMPLES = ROOT / "config-examples"


def _unused_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _prepare_environment() -> None:
    given = os.environ.get("LANDFALL_TEST_SCRATCH")
    scratch = Path(given) if given else Path(tempfile.mkdtemp(prefix="landfall-airflow-tests-"))
    scratch.mkdir(parents=True, exist_ok=True)
    # never the user's own AIRFLOW_HOME: the suite migrates and writes its database
    home = os.environ.get("LANDFALL_TEST_AIRFLOW_HOME") or str(scratch / "airflow-home")
    os.environ["AIRFLOW_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    kubeconfig = scratch / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {{server: "https://127.0.0.1:{_unused_loopback_port()}"}}
contexts:
- name: nowhere
  context: {{cluster: nowhere, user: nobody, namespace: landfall}}
current-context: nowhere
users:
- name: nobody
  user: {{token: not-a-token}}
"""
    )
    os.environ["KUBECONFIG"] = str(kubeconfig)
    # the connection the KubernetesPodOperator's hook reads, without a metadata-database lookup
    os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = '{"conn_type": "kubernetes"}'
    for name in ("LANDFALL_AIRFLOW_MODE", "LANDFALL_CONFIG_DIR", "LANDFALL_DBT_COMMAND", "LANDFALL_WORKDIR"):
        os.environ.pop(name, None)
    os.environ["LANDFALL_CONFIG_DIR"] = str(config_dir_under_test())
    if str(DAGS) not in sys.path:
        sys.path.insert(0, str(DAGS))


def example_configs() -> list[Path]:
    if not CONFIG_EXAMPLES.is_dir():
        return []
    return sorted(
        path
        for path in CONFIG_EXAMPLES.iterdir()
        if path.suffix in (".yaml", ".yml") and not path.name.endswith((".airflow.yaml", ".airflow.yml"))
    )


def config_dir_under_test() -> Path:
    """config-examples/ once the lead has put configs there, else this suite's own fixture."""
    return CONFIG_EXAMPLES if example_configs() else FIXTURE_CONFIGS


def demo_config() -> Path:
    """The demo connector config: config-examples/demo.yaml if present, else the fixture."""
    example = CONFIG_EXAMPLES / "demo.yaml"
    return example if example.is_file() else FIXTURE_CONFIGS / "demo.yaml"


_prepare_environment()


def airflow_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the `airflow` CLI of this venv; output is captured and returned."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    return subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pytest_configure(config):
    # raised inside Airflow 3's .airflowignore handling, not by this code
    config.addinivalue_line("filterwarnings", "ignore:GitWildMatchPattern:DeprecationWarning")


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Path:
    """A migrated metadata database in this session's AIRFLOW_HOME (about 4 s)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    marker = home / ".landfall-db-migrated"
    if not marker.exists():
        result = airflow_cli("db", "migrate")
        assert result.returncode == 0, result.stdout + result.stderr
        marker.touch()
    return home


@pytest.fixture(scope="session")
def airflow3() -> bool:
    import airflow

    return int(airflow.__version__.split(".")[0]) >= 3
