"""Fixtures for the dbt project tests: a fresh copy of dbt/ per test, a dbt runner that
returns run_results.json, and a moto S3 server on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DBT_PROJECT = ROOT / "dbt"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def httpfs_extension_dir() -> str:
    import duckdb_ext  # from the duckdb-ext-httpfs wheel, pinned in run.sh

    return str(Path(list(duckdb_ext.__path__)[0]) / "extensions")


@dataclass
class DbtResult:
    returncode: int
    output: str
    results: list[dict]

    def statuses(self) -> dict[str, str]:
        return {r["unique_id"]: r["status"] for r in self.results}

    def failed(self) -> set[str]:
        return {uid for uid, status in self.statuses().items() if status in ("fail", "error")}

    def failed_matching(self, *needles: str) -> set[str]:
        return {uid for uid in self.failed() if all(n in uid for n in needles)}


class DbtProject:
    """A copy of dbt/ in a session folder, reset for every test.

    Paths stay the same from test to test (project, landing folder, duckdb file) so that dbt
    can reuse its partial parse; the landing folder and the duckdb file are new each time.
    """

    def __init__(self, workspace: Path):
        self.dir = workspace / "project"
        self.landing = workspace / "landing"
        self.database = workspace / "warehouse.duckdb"
        self.logs = workspace / "logs"
        self.reset()

    def reset(self) -> None:
        for path in (self.dir / "models", self.dir / "macros", self.dir / "tests", self.landing):
            shutil.rmtree(path, ignore_errors=True)
        for suffix in ("", ".wal"):
            Path(str(self.database) + suffix).unlink(missing_ok=True)
        shutil.copytree(
            DBT_PROJECT,
            self.dir,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb", "*.duckdb.wal"),
        )
        self.landing.mkdir()
        self.env = {
            **os.environ,
            "LANDFALL_LANDING_URL": self.landing.as_uri(),
            "LANDFALL_DUCKDB_PATH": str(self.database),
            "LANDFALL_DBT_TARGET": "local",
            "LANDFALL_DBT_THREADS": "4",
            "LANDFALL_DBT_DEMO": "true",  # the shipped demo is off unless asked for
            "DBT_LOG_PATH": str(self.logs),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false",
        }

    def use_s3(self, endpoint: str) -> None:
        self.env.update(
            {
                "LANDFALL_DBT_TARGET": "s3",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
                "LANDFALL_S3_ENDPOINT": endpoint,
                "LANDFALL_S3_URL_STYLE": "path",
                "LANDFALL_S3_USE_SSL": "false",
                "LANDFALL_DUCKDB_EXTENSION_DIR": httpfs_extension_dir(),
            }
        )

    def dbt(self, *args: str, results_file: str = "run_results.json") -> DbtResult:
        target = self.dir / "target"
        results_path = target / results_file
        if results_path.exists():
            results_path.unlink()
        proc = subprocess.run(
            [str(VENV_BIN / "dbt"), *args, "--profiles-dir", str(self.dir), "--project-dir", str(self.dir)],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = proc.stdout + proc.stderr
        results = json.loads(results_path.read_text())["results"] if results_path.exists() else []
        return DbtResult(proc.returncode, output, results)

    def build(self, *args: str) -> DbtResult:
        return self.dbt("build", *args)

    def freshness(self) -> DbtResult:
        return self.dbt("source", "freshness", results_file="sources.json")

    def query(self, sql: str) -> list[tuple]:
        import duckdb

        with duckdb.connect(str(self.database), read_only=True) as conn:
            return conn.sql(sql).fetchall()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dbt")


@pytest.fixture
def project(workspace: Path) -> DbtProject:
    return DbtProject(workspace)


@pytest.fixture
def landing_dir(project: DbtProject) -> Path:
    return project.landing


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1; yields host:port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture
def s3_client(s3_endpoint):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://{s3_endpoint}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def landfall_bin() -> Path | None:
    """The landfall binary, or None when it is absent or does not answer --version yet."""
    path = Path(os.environ.get("LANDFALL_BIN", ROOT / "target" / "debug" / "landfall"))
    if not path.is_file():
        return None
    try:
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    return path if version.startswith("landfall ") else None
