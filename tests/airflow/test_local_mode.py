"""Local mode under `airflow dags test`, with a stand-in for the landfall binary.

These runs check the DAG's wiring (arguments, data interval, working directory, XCom, exit
codes as Airflow itself handles them) independently of the real binary; test_e2e_demo.py
runs the real one against the sample API.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from airflow_helpers import return_values, task_instances
from conftest import FIXTURES, airflow_cli, demo_config


@pytest.fixture(autouse=True)
def _nothing_lands_in_the_working_directory():
    before = set(os.listdir(Path.cwd()))
    yield
    assert not {"landing", "landfall.duckdb"} & (set(os.listdir(Path.cwd())) - before)


@pytest.fixture
def local_env(tmp_path: Path):
    """Config folder, landing folder, working directory and fake binary for one DAG run."""

    def make(dag_id: str, sidecar: str = "", **extra_env: str) -> tuple[dict[str, str], Path]:
        configs = tmp_path / "configs"
        configs.mkdir()
        shutil.copy(demo_config(), configs / "demo.yaml")
        (configs / "demo.airflow.yaml").write_text(f"dag_id: {dag_id}\n{sidecar}")
        binary = tmp_path / "landfall"
        binary.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FIXTURES / "fake_landfall.py"}" "$@"\n')
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
        (tmp_path / "work").mkdir()
        env = {
            "LANDFALL_AIRFLOW_MODE": "local",
            "LANDFALL_CONFIG_DIR": str(configs),
            "LANDFALL_BIN": str(binary),
            "LANDFALL_WORKDIR": str(tmp_path / "work"),
            "LANDFALL_LANDING_URL": f"file://{tmp_path / 'landing'}",
            "FAKE_LANDFALL_LOG": str(tmp_path / "calls.jsonl"),
            "LANDFALL_DBT_COMMAND": f'echo "dbt build --select {{select}}" > {tmp_path / "dbt.out"}',
            **extra_env,
        }
        return env, tmp_path

    return make


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_local_dag_runs_every_task_and_returns_the_xcom_document(local_env):
    env, tmp_path = local_env("landfall_demo_wiring")
    result = airflow_cli("dags", "test", "landfall_demo_wiring", "2024-05-01", env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    states = task_instances("landfall_demo_wiring")
    # task_per: source (the default): one task, one landfall process for every stream
    assert {task: value["state"] for task, value in states.items()} == {
        "check": "success",
        "extract": "success",
        "dbt_build": "success",
    }

    invocations = calls(tmp_path)
    config = str(Path(env["LANDFALL_CONFIG_DIR"]) / "demo.yaml")
    assert invocations[0]["args"] == ["check", "--config", config]
    [run] = [call["args"] for call in invocations[1:]]
    assert run == [
        "run", "--config", config,
        # a manual run on 2024-05-01 of a @daily DAG covers the day before: it reads from the
        # checkpoint, and passes its data interval for the manifest
        "--data-interval-start", "2024-04-30T00:00:00+00:00",
        "--data-interval-end", "2024-05-01T00:00:00+00:00",
        "--xcom-output", run[-1],
    ]  # fmt: skip
    assert {call["cwd"] for call in invocations} == {env["LANDFALL_WORKDIR"]}

    xcoms = return_values("landfall_demo_wiring")
    document = xcoms["extract"]
    assert document["status"] == "succeeded" and document["source"] == "demo"
    for stream in ("customers", "orders", "products"):
        assert document["streams"][stream]["rows_written"] == 1
    assert "check" not in xcoms
    assert (tmp_path / "dbt.out").read_text().strip() == "dbt build --select source:demo+"


def test_dbt_step_checks_freshness_and_a_stale_source_fails_it(local_env):
    """The default dbt command builds, then runs `dbt source freshness` for the source; its
    exit 1 (a source past error_after: tests/dbt/test_deletes.py shows real dbt-duckdb exiting
    1 on a stale landing) fails dbt_build and calls on_failure_callback. `dbt` here is a
    stand-in on PATH that logs its arguments."""

    def fake_dbt(tmp_path: Path) -> Path:
        folder = tmp_path / "bin"
        folder.mkdir()
        script = folder / "dbt"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> "{tmp_path / "dbt.calls"}"\n'
            'if [ "$1 $2" = "source freshness" ]; then exit "${FAKE_DBT_FRESHNESS_EXIT:-0}"; fi\n'
        )
        script.chmod(0o755)
        return folder

    # (a fresh source passes: test_e2e_demo.py runs this command with real dbt)
    env, tmp_path = local_env(
        "landfall_demo_stale",
        "retries: 0\ndbt: {retries: 0}\non_failure_callback: landfall_test_callbacks:record\n",
        LANDFALL_DBT_COMMAND="",
        FAKE_DBT_FRESHNESS_EXIT="1",
    )
    env["PATH"] = f"{fake_dbt(tmp_path)}{os.pathsep}{os.environ['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FIXTURES / "pymodules"), os.environ.get("PYTHONPATH")]))
    env["LANDFALL_TEST_FAILURES"] = str(tmp_path / "failures.txt")
    result = airflow_cli("dags", "test", "landfall_demo_stale", "2024-05-01", env=env)
    assert result.returncode != 0
    states = {task: value["state"] for task, value in task_instances("landfall_demo_stale").items()}
    assert states == {"check": "success", "extract": "success", "dbt_build": "failed"}
    dbt_calls = (tmp_path / "dbt.calls").read_text().splitlines()
    assert [call.split(" --project-dir ")[0] for call in dbt_calls] == [
        "build --select source:demo+",
        "source freshness --select source:demo",
    ], dbt_calls
    assert (tmp_path / "failures.txt").read_text().split() == ["dbt_build"]


def test_exit_codes_as_airflow_handles_them(local_env):
    """4 fails without retry, 75 uses the retry, 3 under partial_policy succeed passes."""
    env, tmp_path = local_env(
        "landfall_demo_policy",
        "retries: 1\nretry_delay: 1s\npartial_policy: succeed\ntask_per: stream\n",
        FAKE_LANDFALL_EXIT="customers:4,orders:75,products:3",
    )
    result = airflow_cli("dags", "test", "landfall_demo_policy", "2024-05-01", env=env)
    assert result.returncode != 0, "a failed DAG run fails `airflow dags test`"

    states = task_instances("landfall_demo_policy")
    assert states["check"]["state"] == "success"
    assert states["extract_customers"] == {"state": "failed", "try_number": 1}
    assert states["extract_orders"] == {"state": "failed", "try_number": 2}
    assert states["extract_products"]["state"] == "success"
    assert states["dbt_build"]["state"] == "upstream_failed"

    attempts = [call["args"][4] for call in calls(tmp_path) if call["args"][0] == "run"]
    assert attempts.count("customers") == 1
    assert attempts.count("orders") == 2
    assert return_values("landfall_demo_policy")["extract_products"]["status"] == "partial"
    assert not (tmp_path / "dbt.out").exists()


def test_a_trigger_with_start_and_end_runs_that_window_without_reaching_the_shell(local_env):
    """A manual trigger's start/end params are a backfill window, passed as data, never code."""
    env, tmp_path = local_env("landfall_demo_params", "window_mode: checkpoint\ntask_per: stream\n")
    hostile = "2024-01-01T00:00:00Z'; touch pwned; echo '"
    conf = json.dumps({"start": hostile, "end": "2024-02-01T00:00:00Z"})
    result = airflow_cli("dags", "test", "landfall_demo_params", "2024-05-01", "--conf", conf, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    runs = {call["args"][4]: call["args"] for call in calls(tmp_path) if call["args"][0] == "run"}
    args = runs["orders"]
    assert args[args.index("--start") + 1] == hostile
    assert args[args.index("--end") + 1] == "2024-02-01T00:00:00Z"
    assert not (Path(env["LANDFALL_WORKDIR"]) / "pwned").exists()


def test_interval_mode_passes_the_data_interval_with_lookback(local_env):
    env, tmp_path = local_env("landfall_demo_interval", "window_mode: interval\ntask_per: stream\n")
    result = airflow_cli("dags", "test", "landfall_demo_interval", "2024-05-01", env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    runs = {call["args"][4]: call["args"] for call in calls(tmp_path) if call["args"][0] == "run"}
    args = runs["orders"]
    assert args[args.index("--start") + 1] == "2024-04-30T00:00:00+00:00"
    assert args[args.index("--end") + 1] == "2024-05-01T00:00:00+00:00"
    assert "--start-lookback" in args


def test_the_openlineage_parent_reaches_landfall_when_the_provider_is_enabled(local_env):
    """With Airflow's OpenLineage provider on, landfall gets the task's run as its parent."""
    pytest.importorskip("airflow.providers.openlineage", reason="Airflow 2.10's lock has no OpenLineage provider")
    from airflow.providers.openlineage.utils.utils import build_task_instance_ol_run_id

    env, tmp_path = local_env(
        "landfall_demo_lineage",
        # any transport enables the provider (and its macros); console keeps the test offline
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "console"}),
        AIRFLOW__OPENLINEAGE__NAMESPACE="shop",
    )
    result = airflow_cli("dags", "test", "landfall_demo_lineage", "2024-05-01", env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    [run] = [call for call in calls(tmp_path) if call["args"][0] == "run"]
    namespace, job, run_id = run["openlineage_parent_id"].split("/")
    assert (namespace, job) == ("shop", "landfall_demo_lineage.extract")
    # what the provider computes for this task instance, under the same namespace setting
    from airflow.providers.openlineage import conf

    clear = getattr(conf.namespace, "cache_clear", lambda: None)
    os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "shop"
    clear()
    try:
        assert conf.namespace() == "shop"
        expected = build_task_instance_ol_run_id(
            dag_id="landfall_demo_lineage",
            task_id="extract",
            try_number=1,
            logical_date=datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc),
            map_index=-1,
        )
    finally:
        del os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"]
        clear()
    assert run_id == expected


def test_without_the_provider_enabled_the_parent_is_empty(local_env):
    """No transport configured: the template renders "", which landfall reads as no parent."""
    env, tmp_path = local_env("landfall_demo_nolineage")
    result = airflow_cli("dags", "test", "landfall_demo_nolineage", "2024-05-01", env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    [run] = [call for call in calls(tmp_path) if call["args"][0] == "run"]
    assert run["openlineage_parent_id"] == ""
