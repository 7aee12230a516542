"""The pods the KubernetesPodOperator tasks would create, built offline and inspected."""

from __future__ import annotations

import shlex
import shutil
import types

import pendulum
import pytest

from conftest import CONFIG_EXAMPLES, FIXTURE_CONFIGS
from landfall_airflow import discovery, factory

START = pendulum.datetime(2024, 4, 30, tz="UTC")
END = pendulum.datetime(2024, 5, 1, tz="UTC")


@pytest.fixture
def demo_dag(tmp_path, monkeypatch):
    """The fixture demo connector, with an optional sidecar, as a Kubernetes-mode DAG."""

    def build(sidecar: str | None = None):
        shutil.copy(FIXTURE_CONFIGS / "demo.yaml", tmp_path / "demo.yaml")
        if sidecar:
            (tmp_path / "demo.airflow.yaml").write_text(sidecar)
        monkeypatch.setenv("LANDFALL_CONFIG_DIR", str(tmp_path))
        monkeypatch.delenv("LANDFALL_AIRFLOW_MODE", raising=False)
        [dag] = factory.build_all_dags(lambda key: None)
        return dag

    return build


class FakeDagRun:
    def __init__(self, run_type):
        self.run_type = run_type


def build_pod(task, start=START, end=END, run_type="scheduled", params=None):
    """Render the task's templates for a run with this data interval, then build its pod."""
    task.render_template_fields(
        {
            "data_interval_start": start,
            "data_interval_end": end,
            "ds": "2024-04-30",
            "dag_run": FakeDagRun(run_type),
            "params": params or {"start": None, "end": None},
        }
    )
    return task.build_pod_request_obj()


def container(pod, name):
    [found] = [item for item in pod.spec.containers if item.name == name]
    return found


def test_extraction_pod(demo_dag):
    pod = build_pod(demo_dag().get_task("extract"))
    main = container(pod, "landfall")
    assert main.image == "ghcr.io/landfall-dev/landfall:0.1.0"
    assert main.command in (None, [])  # the image's entrypoint is the landfall binary
    assert main.args == [
        "run",
        "--config",
        "/etc/landfall/config.yaml",
        # no --stream: one process runs every stream of the config (task_per: source)
        # a scheduled run reads from the checkpoint; its data interval is for the manifest
        "--data-interval-start",
        "2024-04-30T00:00:00+00:00",
        "--data-interval-end",
        "2024-05-01T00:00:00+00:00",
        "--xcom-output",
        "/airflow/xcom/return.json",
    ]
    assert pod.metadata.namespace == "landfall"
    assert pod.spec.service_account_name == "landfall"
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.enable_service_links is False
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.restart_policy == "Never"

    [env_from] = main.env_from
    assert env_from.secret_ref.name == "landfall-demo"
    env = {item.name: item.value for item in main.env}
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"

    volumes = {volume.name: volume for volume in pod.spec.volumes}
    assert volumes["config"].config_map.name == "landfall-demo"
    assert volumes["config"].config_map.default_mode == 0o444
    assert volumes["tmp"].empty_dir.size_limit == "1Gi"
    mounts = {mount.mount_path: mount for mount in main.volume_mounts}
    assert mounts["/etc/landfall"].name == "config" and mounts["/etc/landfall"].read_only is True
    assert mounts["/tmp"].name == "tmp"
    assert mounts["/airflow/xcom"].name == "xcom"

    assert main.resources.requests == {"cpu": "100m", "memory": "128Mi"}
    assert main.resources.limits == {"memory": "512Mi"}

    labels = pod.metadata.labels
    assert labels["app.kubernetes.io/name"] == "landfall"
    assert labels["app.kubernetes.io/component"] == "extractor"
    assert labels["landfall.dev/connector"] == "demo"
    assert "landfall.dev/stream" not in labels
    assert pod.metadata.name.startswith("landfall-demo-extract")


def test_one_task_runs_every_stream_in_one_process_by_default(demo_dag):
    """One process per source: one rate limiter, circuit breaker and token cache."""
    dag = demo_dag()
    assert sorted(dag.task_ids) == ["check", "extract"]
    task = dag.get_task("extract")
    args = container(build_pod(task), "landfall").args
    assert args[:3] == ["run", "--config", "/etc/landfall/config.yaml"]
    assert "--stream" not in args  # the config's streams, all of them
    assert [outlet.uri.rsplit("/", 1)[1] for outlet in task.outlets] == ["customers", "orders", "products"]


def test_a_subset_of_streams_is_passed_to_the_one_task(demo_dag):
    task = demo_dag("streams: [orders, products]\n").get_task("extract")
    args = container(build_pod(task), "landfall").args
    assert args[3:7] == ["--stream", "orders", "--stream", "products"]
    assert [outlet.uri.rsplit("/", 1)[1] for outlet in task.outlets] == ["orders", "products"]


def test_task_per_stream_is_an_opt_in(demo_dag):
    dag = demo_dag("task_per: stream\n")
    assert sorted(dag.task_ids) == ["check", "extract_customers", "extract_orders", "extract_products"]
    pod = build_pod(dag.get_task("extract_orders"))
    assert container(pod, "landfall").args[3:5] == ["--stream", "orders"]
    assert pod.metadata.labels["landfall.dev/stream"] == "orders"
    assert pod.metadata.name.startswith("landfall-demo-orders")


def test_task_per_must_be_source_or_stream(demo_dag):
    with pytest.raises(factory.LandfallDagError, match="task_per must be one of source, stream"):
        demo_dag("task_per: table\n")


def test_restricted_security_context_on_every_container(demo_dag):
    pod = build_pod(demo_dag().get_task("extract"))
    pod_context = pod.spec.security_context
    assert pod_context.run_as_non_root is True
    assert pod_context.run_as_user == 65532
    assert pod_context.fs_group == 65532
    assert pod_context.seccomp_profile.type == "RuntimeDefault"
    names = {item.name for item in pod.spec.containers}
    assert names == {"landfall", "airflow-xcom-sidecar"}
    for item in pod.spec.containers:
        context = item.security_context
        assert context is not None, item.name
        assert context.run_as_non_root is True
        assert isinstance(context.run_as_user, int)
        assert context.read_only_root_filesystem is True
        assert context.allow_privilege_escalation is False
        assert context.privileged is False
        assert context.capabilities.drop == ["ALL"]
        assert context.seccomp_profile.type == "RuntimeDefault"


def test_task_settings(demo_dag):
    task = demo_dag().get_task("extract")
    assert task.do_xcom_push is True
    assert str(getattr(task.on_finish_action, "value", task.on_finish_action)) == "delete_pod"
    assert task.termination_grace_period == 30
    assert task.base_container_name == "landfall"
    assert task.deferrable is False


def test_check_pod(demo_dag):
    task = demo_dag().get_task("check")
    assert task.do_xcom_push is False
    pod = build_pod(task)
    assert [item.name for item in pod.spec.containers] == ["landfall"]
    assert container(pod, "landfall").args == ["check", "--config", "/etc/landfall/config.yaml"]


def test_no_dbt_pod_without_a_dbt_image(demo_dag):
    assert "dbt_build" not in demo_dag().task_ids


def test_dbt_pod(demo_dag):
    dag = demo_dag("dbt: {image: 'registry.example.com/analytics-dbt:1.4.0'}\n")
    task = dag.get_task("dbt_build")
    assert task.upstream_task_ids == {"extract"}
    assert task.trigger_rule == "all_success"
    assert task.pool == "default_pool"
    pod = build_pod(task)
    [dbt] = pod.spec.containers
    assert dbt.name == "dbt"
    assert dbt.image == "registry.example.com/analytics-dbt:1.4.0"
    # the build, then freshness of the source: a stale source fails the pod and so the task
    assert dbt.command == [
        "/bin/sh", "-c",
        "dbt build --select source:demo+ && exec dbt source freshness --select source:demo",
    ]
    assert dbt.args == []
    env = {item.name: item.value for item in dbt.env}
    assert env["DBT_TARGET_PATH"].startswith("/tmp/") and env["DBT_LOG_PATH"].startswith("/tmp/")
    assert dbt.security_context.read_only_root_filesystem is True
    assert pod.metadata.labels["app.kubernetes.io/component"] == "transformer"


def test_dbt_pod_stages_external_sources_first_when_asked(demo_dag):
    """dbt.stage_external_sources: the external tables are (re)created, then dbt build runs."""
    dag = demo_dag(
        "dbt: {image: 'registry.example.com/analytics-dbt:1.4.0', stage_external_sources: true,"
        " target: prod, project_dir: /dbt}\n"
    )
    [dbt] = build_pod(dag.get_task("dbt_build")).spec.containers
    assert dbt.command[:2] == ["/bin/sh", "-c"] and dbt.args == []
    script = dbt.command[2]
    stage, build, freshness = script.split(" && ")
    assert shlex.split(stage) == [
        "dbt", "run-operation", "landfall.stage_external_sources", "--args", "{select: demo}",
        "--project-dir", "/dbt", "--target", "prod",
    ]  # fmt: skip
    assert shlex.split(build) == ["dbt", "build", "--select", "source:demo+", "--project-dir", "/dbt", "--target", "prod"]
    assert shlex.split(freshness) == [
        "exec", "dbt", "source", "freshness", "--select", "source:demo", "--project-dir", "/dbt", "--target", "prod",
    ]  # fmt: skip


def test_the_openlineage_parent_is_templated_into_the_pod(demo_dag):
    """The provider's lineage_parent_id when its macros exist (provider enabled), else ""."""
    task = demo_dag().get_task("extract")
    env = {item.name: item.value for item in container(build_pod(task), "landfall").env}
    assert env["OPENLINEAGE_PARENT_ID"] == ""

    task = demo_dag().get_task("extract")
    seen = []

    def lineage_parent_id(task_instance):
        seen.append(task_instance)
        return "airflow/landfall_demo.extract/019000000000-7000-8000-000000000000"

    plugin = types.SimpleNamespace(lineage_parent_id=lineage_parent_id)
    task.render_template_fields(
        {
            "data_interval_start": START,
            "data_interval_end": END,
            "dag_run": FakeDagRun("scheduled"),
            "params": {"start": None, "end": None},
            "macros": types.SimpleNamespace(OpenLineageProviderPlugin=plugin),
            "task_instance": "the task instance",
        }
    )
    env = {item.name: item.value for item in container(task.build_pod_request_obj(), "landfall").env}
    assert env["OPENLINEAGE_PARENT_ID"] == "airflow/landfall_demo.extract/019000000000-7000-8000-000000000000"
    assert seen == ["the task instance"]


def test_dbt_pod_without_freshness(demo_dag):
    dag = demo_dag("dbt: {image: 'registry.example.com/analytics-dbt:1.4.0', freshness: false, project_dir: /dbt}\n")
    [dbt] = build_pod(dag.get_task("dbt_build")).spec.containers
    assert dbt.command == ["dbt"]
    assert dbt.args == ["build", "--select", "source:demo+", "--project-dir", "/dbt"]


def test_run_without_data_interval_lets_landfall_use_its_state(demo_dag):
    pod = build_pod(demo_dag().get_task("extract"), start=None, end=None)
    args = container(pod, "landfall").args
    assert "--start" not in args and "--end" not in args and "--data-interval-start" not in args
    assert args[-2:] == ["--xcom-output", "/airflow/xcom/return.json"]


def window(args):
    return [(flag, args[index + 1]) for index, flag in enumerate(args) if flag in ("--start", "--end")]


def test_a_backfill_run_reads_its_data_interval(demo_dag):
    pod = build_pod(demo_dag().get_task("extract"), run_type="backfill")
    args = container(pod, "landfall").args
    assert window(args) == [("--start", "2024-04-30T00:00:00+00:00"), ("--end", "2024-05-01T00:00:00+00:00")]
    assert "--start-lookback" not in args


def test_a_manual_trigger_with_start_and_end_params_is_a_backfill(demo_dag):
    params = {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}
    pod = build_pod(demo_dag().get_task("extract"), run_type="manual", params=params)
    args = container(pod, "landfall").args
    assert window(args) == [("--start", "2024-01-01T00:00:00Z"), ("--end", "2024-02-01T00:00:00Z")]
    assert args[args.index("--data-interval-start") + 1] == "2024-04-30T00:00:00+00:00"


def test_interval_mode_is_an_opt_in_with_lookback(demo_dag):
    pod = build_pod(demo_dag("window_mode: interval\n").get_task("extract"))
    args = container(pod, "landfall").args
    assert window(args) == [("--start", "2024-04-30T00:00:00+00:00"), ("--end", "2024-05-01T00:00:00+00:00")]
    assert "--start-lookback" in args


def test_pass_data_interval_is_replaced_by_window_mode(demo_dag):
    with pytest.raises(factory.LandfallDagError, match="window_mode"):
        demo_dag("pass_data_interval: true\n")


def test_settings_reach_the_pod(demo_dag):
    dag = demo_dag(
        """
kubernetes:
  namespace: data
  image: registry.example.com/landfall
  image_tag: 1.2.3
  service_account: landfall-shop
  config_map: shop-config
  config_key: shop.yaml
  env_from_secrets: [shop-api, shared]
  labels: {azure.workload.identity/use: "true"}
  resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "2", memory: 2Gi}}
  run_as_user: 10001
  termination_grace_period: 45
  tolerations: [{key: dedicated, operator: Equal, value: etl, effect: NoSchedule}]
  node_selector: {pool: etl}
env: {RUST_LOG: info}
dbt:
  enabled: false
"""
    )
    assert "dbt_build" not in dag.task_ids
    pod = build_pod(dag.get_task("extract"))
    main = container(pod, "landfall")
    assert pod.metadata.namespace == "data"
    assert main.image == "registry.example.com/landfall:1.2.3"
    assert pod.spec.service_account_name == "landfall-shop"
    assert "/etc/landfall/shop.yaml" in main.args
    assert {volume.name: volume for volume in pod.spec.volumes}["config"].config_map.name == "shop-config"
    assert [item.secret_ref.name for item in main.env_from] == ["shop-api", "shared"]
    assert pod.metadata.labels["azure.workload.identity/use"] == "true"
    assert main.resources.limits == {"cpu": "2", "memory": "2Gi"}
    assert main.security_context.run_as_user == 10001
    assert pod.spec.termination_grace_period_seconds == 45
    assert pod.spec.tolerations[0].key == "dedicated"
    assert pod.spec.node_selector == {"pool": "etl"}
    assert {item.name: item.value for item in main.env}["RUST_LOG"] == "info"


def test_source_with_underscore_gets_dns_safe_names(tmp_path, monkeypatch):
    (tmp_path / "web_shop.yaml").write_text("version: 1\nsource: {name: web_shop}\nstreams: [{name: line_items}]\n")
    monkeypatch.setenv("LANDFALL_CONFIG_DIR", str(tmp_path))
    [item], errors = discovery.discover(lambda key: None)
    assert errors == []
    assert item.settings["kubernetes"]["config_map"] == "landfall-web-shop"
    [dag] = factory.build_all_dags(lambda key: None)
    pod = build_pod(dag.get_task("extract"))
    assert pod.metadata.name.startswith("landfall-web-shop-extract")
    assert any(volume.config_map and volume.config_map.name == "landfall-web-shop" for volume in pod.spec.volumes)


def test_the_postgres_example_runs_unchanged_as_a_dag(tmp_path, monkeypatch):
    """config-examples/postgres.yaml (a database source, issue 18): the same factory builds its
    DAG; the pod runs `landfall run` on the mounted config, with the connector's Secret (which
    holds DATABASE_URL) as its environment, and each table stream is an asset."""
    shutil.copy(CONFIG_EXAMPLES / "postgres.yaml", tmp_path / "postgres.yaml")
    monkeypatch.setenv("LANDFALL_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LANDFALL_AIRFLOW_MODE", raising=False)
    monkeypatch.setenv("LANDFALL_LANDING_URL", "s3://lake/landing")
    [item], errors = discovery.discover(lambda key: None)
    assert errors == []
    assert item.settings["streams"] == ["orders", "customers"]
    [dag] = factory.build_all_dags(lambda key: None)
    assert dag.dag_id == item.settings["dag_id"]
    pod = build_pod(dag.get_task("extract"))
    main = container(pod, "landfall")
    assert main.args == [
        "run",
        "--config",
        "/etc/landfall/config.yaml",
        "--data-interval-start",
        "2024-04-30T00:00:00+00:00",
        "--data-interval-end",
        "2024-05-01T00:00:00+00:00",
        "--xcom-output",
        "/airflow/xcom/return.json",
    ]
    [env_from] = main.env_from
    assert env_from.secret_ref.name == "landfall-shop-postgres"
    assert not any(item.name == "DATABASE_URL" for item in main.env), "the URL comes from the Secret only"
    assert any(volume.config_map and volume.config_map.name == "landfall-shop-postgres" for volume in pod.spec.volumes)
    assert pod.metadata.labels["landfall.dev/connector"] == "shop_postgres"
    uris = [outlet.uri for outlet in dag.get_task("extract").outlets]
    assert uris == ["s3://lake/landing/shop_postgres/orders", "s3://lake/landing/shop_postgres/customers"]
    check = container(build_pod(dag.get_task("check")), "landfall")
    assert check.args[:3] == ["check", "--config", "/etc/landfall/config.yaml"]
