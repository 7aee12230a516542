"""The demo DAG end to end in local mode: the real landfall binary against its sample API, then dbt.

Needs `LANDFALL_BIN` (default target/debug/landfall) and the dbt venv that run.sh installs
into .tools/dbt; skipped only when the binary is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from airflow_helpers import return_values, task_instances
from conftest import ROOT, airflow_cli, demo_config

LANDFALL_BIN = Path(os.environ.get("LANDFALL_BIN") or ROOT / "target" / "debug" / "landfall")
DBT_BIN_DIR = ROOT / ".tools" / "dbt" / "bin"
DAG_ID = "landfall_demo"
STREAMS = ("customers", "orders", "products")

pytestmark = pytest.mark.skipif(
    not (LANDFALL_BIN.is_file() and os.access(LANDFALL_BIN, os.X_OK)),
    reason=f"landfall binary not found at {LANDFALL_BIN} (set LANDFALL_BIN or build it)",
)


@pytest.fixture
def sample_api():
    """`landfall demo --serve --port 0` on loopback; yields its base URL, stops it by PID."""
    server = subprocess.Popen(
        [str(LANDFALL_BIN), "demo", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(server.stdout.readline()), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=20)
        except queue.Empty:
            pytest.fail("`landfall demo --serve` printed nothing within 20 s")
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.removeprefix("listening on ").strip()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_demo_dag_lands_the_sample_api_and_builds_dbt(sample_api, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(demo_config(), configs / "demo.yaml")
    landing = tmp_path / "landing"
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "LANDFALL_AIRFLOW_MODE": "local",
        "LANDFALL_CONFIG_DIR": str(configs),
        "LANDFALL_BIN": str(LANDFALL_BIN),
        "LANDFALL_WORKDIR": str(work),
        "DEMO_API_URL": sample_api,
        "LANDFALL_LANDING_URL": f"file://{landing}",
        # dbt: the repo's project (the default command), its state kept out of the repo
        "PATH": f"{DBT_BIN_DIR}{os.pathsep}{os.environ['PATH']}",
        "LANDFALL_DUCKDB_PATH": str(tmp_path / "dbt" / "landfall.duckdb"),
        "LANDFALL_DBT_DEMO": "true",  # the project's demo source is off unless asked for
        "DBT_TARGET_PATH": str(tmp_path / "dbt" / "target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt" / "logs"),
    }
    pool = airflow_cli("pools", "set", "landfall_demo", "4", "landfall: demo API", env=env)
    assert pool.returncode == 0, pool.stderr

    # A manual run on 2024-03-02 of the @daily DAG covers [2024-03-01, 2024-03-02): the sample
    # data's updated_at values start on 2024-03-01.
    result = airflow_cli("dags", "test", DAG_ID, "2024-03-02", env=env, timeout=600)
    output = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, output
    states = {task: value["state"] for task, value in task_instances(DAG_ID).items()}
    assert states == {task: "success" for task in ("check", "extract", "dbt_build")}, output

    xcoms = return_values(DAG_ID)
    document = xcoms["extract"]  # one landfall process ran every stream
    for stream in STREAMS:
        assert document["status"] == "succeeded"
        assert document["exit_code"] == 0
        assert document["source"] == "demo"
        summary = document["streams"][stream]
        assert summary["status"] == "succeeded"
        assert summary["rows_written"] > 0

        manifest_path = Path(document["manifest_path"].removeprefix("file://"))
        assert manifest_path.is_file(), manifest_path
        assert manifest_path.parent.parent.name == "_manifests"
        manifest = json.loads(manifest_path.read_text())
        assert manifest["run_id"] == document["run_id"]
        assert manifest["status"] == "succeeded"
        assert [item["name"] for item in manifest["streams"]] == list(STREAMS)
        [landed] = [item for item in manifest["streams"] if item["name"] == stream]
        assert landed["rows_written"] == summary["rows_written"]
        assert sum(part["rows"] for part in landed["files"]) == landed["rows_written"]
        for part in landed["files"]:
            path = landing / part["path"]
            assert path.is_file(), path
            assert path.name.endswith(".jsonl.gz")
            assert f"run_id={document['run_id']}" in part["path"]
        # the run's data interval is recorded for audit ...
        assert manifest["data_interval"] == {"start": "2024-03-01T00:00:00+00:00", "end": "2024-03-02T00:00:00+00:00"}
        if landed["sync_mode"] == "incremental":
            # ... while the scheduled run reads from the checkpoint: on this first run, the
            # configured start, so nothing before the interval is left unread
            start = dt.datetime.fromisoformat(landed["cursor_start"].replace("Z", "+00:00"))
            assert start == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

    assert (tmp_path / "dbt" / "landfall.duckdb").is_file()
    # dbt_build ran `dbt source freshness` after the build, and the fresh landing passed it
    freshness = json.loads((tmp_path / "dbt" / "target" / "sources.json").read_text())
    assert {r["unique_id"] for r in freshness["results"]} >= {f"source.landfall.demo.{s}" for s in (*STREAMS, "_manifests")}
    assert {r["status"] for r in freshness["results"]} == {"pass"}
    assert not (work / "landing").exists(), "the landing URL from the environment was used"
