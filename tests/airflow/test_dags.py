"""Airflow loads one DAG per connector config, quickly, without network, with the right shape."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from airflow_helpers import AIRFLOW_3, file_parse_seconds, load_dagbag
from conftest import DAGS, config_dir_under_test
from landfall_airflow import connector, discovery, factory


@pytest.fixture(scope="module")
def expected():
    """dag_id -> connector config, for every config the suite expects a DAG for."""
    connectors, errors = discovery.discover()
    assert errors == []
    return {item.settings["dag_id"]: item for item in connectors}


@pytest.fixture(scope="module")
def bag():
    return load_dagbag(DAGS)


def test_every_config_becomes_a_dag_without_import_errors(bag, expected):
    assert bag.import_errors == {}
    configs = [
        path
        for path in sorted(config_dir_under_test().glob("*.y*ml"))
        if not path.name.endswith((".airflow.yaml", ".airflow.yml"))
    ]
    assert configs, "no connector config to test"
    assert len(expected) == len(configs)
    assert sorted(bag.dags) == sorted(expected)


def test_airflow_parses_only_the_dag_file(bag):
    """.airflowignore keeps the package and the configs out of DAG discovery."""
    assert [Path(stat.file).name for stat in bag.dagbag_stats] == ["landfall_dags.py"]


def test_parsing_is_fast_and_offline(monkeypatch):
    load_dagbag(DAGS)  # first parse pays the provider imports, as Airflow's pre-import does

    def refuse(*args, **kwargs):
        raise AssertionError(f"DAG parsing opened a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    started = time.perf_counter()
    bag = load_dagbag(DAGS)
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert file_parse_seconds(bag, "landfall_dags.py") < 0.5
    assert elapsed < 1.0


def test_dag_shape(bag, expected):
    for dag_id, item in expected.items():
        dag = bag.dags[dag_id]
        # task_per: source (the default): one extraction task runs every stream, one budget.
        assert item.settings["task_per"] == "source"
        extract_ids = {"extract"}
        dbt_ids = {"dbt_build"} if factory.dbt_enabled(item.settings, "kubernetes") else set()
        assert set(dag.task_ids) == {"check", *extract_ids, *dbt_ids}
        assert dag.get_task("check").downstream_task_ids == extract_ids
        assert dag.max_active_runs == 1
        assert dag.catchup is False
        for task_id in ("check", *extract_ids):
            task = dag.get_task(task_id)
            assert task.pool == f"landfall_{item.config.source}"
            assert task.retries == item.settings["retries"]  # 3 unless the connector's sidecar says otherwise
            assert task.max_retry_delay is not None
            assert task.execution_timeout is not None
            assert task.retry_exponential_backoff == (2.0 if AIRFLOW_3 else True)
        if dbt_ids:
            dbt = dag.get_task("dbt_build")
            assert dbt.upstream_task_ids == extract_ids
            assert dbt.trigger_rule == "all_success"  # dbt runs once every stream has landed


def test_cron_schedules_get_data_intervals(bag, expected):
    """Airflow 3 would give a bare cron string empty intervals; --start/--end need real ones."""
    import pendulum

    for dag_id in expected:
        timetable = bag.dags[dag_id].timetable
        assert type(timetable).__name__ == "CronDataIntervalTimetable"
        if hasattr(timetable, "infer_manual_data_interval"):
            interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2024, 5, 1, tz="UTC"))
            assert interval.start < interval.end


def test_each_extraction_declares_its_landed_stream_as_an_asset(bag, expected):
    for dag_id, item in expected.items():
        dag = bag.dags[dag_id]
        landing = item.config.landing_url
        uris = [outlet.uri for outlet in dag.get_task("extract").outlets]
        if landing is None:
            assert uris == []
        else:
            prefix = f"{landing.rstrip('/')}/{item.config.source}"
            assert uris == [f"{prefix}/{stream}" for stream in item.settings["streams"]]
        assert dag.get_task("check").outlets == []


def test_asset_class_matches_the_airflow_version(bag, expected):
    dag = bag.dags[next(iter(expected))]
    outlet = next(task.outlets[0] for task in dag.tasks if task.outlets)
    assert type(outlet).__name__ == ("Asset" if AIRFLOW_3 else "Dataset")


def test_unresolvable_landing_url_means_no_outlet(tmp_path, monkeypatch):
    config = tmp_path / "shop.yaml"
    config.write_text(
        "version: 1\nsource: {name: shop}\nstreams: [{name: orders}]\nlanding: {url: 's3://${env:LAKE_BUCKET}/raw'}\n"
    )
    monkeypatch.delenv("LAKE_BUCKET", raising=False)
    assert connector.load(config).landing_url is None
    monkeypatch.setenv("LANDFALL_CONFIG_DIR", str(tmp_path))
    [dag] = factory.build_all_dags(lambda key: None)
    assert dag.get_task("extract").outlets == []


@pytest.mark.parametrize("run_mode", ["kubernetes", "local"])
def test_dags_survive_serialization(run_mode, monkeypatch, expected):
    """The DAG processor stores DAGs serialized; the scheduler reads them back."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow 2.10 and early 3.x
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer

    monkeypatch.setenv("LANDFALL_AIRFLOW_MODE", run_mode)
    for dag in factory.build_all_dags():
        restored = Serializer.from_dict(Serializer.to_dict(dag))
        assert set(restored.task_ids) == set(dag.task_ids)
        assert type(restored.timetable).__name__ == "CronDataIntervalTimetable"
        for task_id in dag.task_ids:
            original, copy = dag.get_task(task_id), restored.get_task(task_id)
            assert [outlet.uri for outlet in copy.outlets] == [outlet.uri for outlet in original.outlets]
            assert copy.pool == original.pool
            assert copy.retries == original.retries
