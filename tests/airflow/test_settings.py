"""Where configs and DAG settings come from, how they layer, and how mistakes are reported."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURE_CONFIGS, FIXTURES
from landfall_airflow import connector, discovery, factory, settings
from landfall_airflow.compat import AIRFLOW_3

DEMO = FIXTURE_CONFIGS / "demo.yaml"


def no_variables(_key: str) -> None:
    return None


def variables(**values: str):
    return lambda key: values.get(key)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    shutil.copy(DEMO, tmp_path / "demo.yaml")
    return tmp_path


@pytest.fixture
def use_dir(monkeypatch, config_dir: Path) -> Path:
    monkeypatch.setenv("LANDFALL_CONFIG_DIR", str(config_dir))
    return config_dir


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_connector_config_reads_only_names_and_landing(monkeypatch):
    monkeypatch.delenv("LANDFALL_LANDING_URL", raising=False)
    config = connector.load(DEMO)
    assert config.source == "demo"
    assert config.streams == ("customers", "orders", "products")
    assert config.landing_url == "file://./landing"
    monkeypatch.setenv("LANDFALL_LANDING_URL", "s3://lake/raw")
    assert connector.load(DEMO).landing_url == "s3://lake/raw"


def test_env_references_without_default_stay_unresolved():
    assert connector.resolve_env_references("s3://${env:BUCKET}/raw", {}) is None
    assert connector.resolve_env_references("s3://${env:BUCKET}/raw", {"BUCKET": "b"}) == "s3://b/raw"
    assert connector.resolve_env_references("${env:U:-file://./x}", {"U": ""}) == "file://./x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nsource: {name: Bad-Name}\nstreams: [{name: a}]\n", "source.name"),
        ("version: 1\nsource: {name: shop}\nstreams: []\n", "streams must be a non-empty list"),
        ("version: 1\nsource: {name: shop}\nstreams: [{name: a}, {name: a}]\n", "used twice"),
        ("version: 1\nsource: {name: shop\n", "cannot read"),
        ("- a list\n", "mapping"),
    ],
)
def test_invalid_connector_configs_name_the_problem(tmp_path, text, message):
    path = write(tmp_path / "shop.yaml", text)
    with pytest.raises(connector.ConnectorConfigError, match=message) as raised:
        connector.load(path)
    assert str(path) in str(raised.value)


def test_defaults(use_dir):
    [item], errors = discovery.discover(no_variables)
    assert errors == []
    values = item.settings
    assert values["dag_id"] == "landfall_demo"
    assert values["pool"] == "landfall_demo"
    assert values["max_active_runs"] == 1
    assert values["retries"] == 3
    assert values["retry_delay"] == dt.timedelta(minutes=2)
    assert values["max_retry_delay"] == dt.timedelta(minutes=30)
    assert values["execution_timeout"] == dt.timedelta(hours=2)
    assert values["partial_policy"] == "retry"
    assert values["streams"] == ["customers", "orders", "products"]
    assert values["kubernetes"]["config_map"] == "landfall-demo"
    assert values["kubernetes"]["env_from_secrets"] == ["landfall-demo"]
    assert values["kubernetes"]["termination_grace_period"] == 30
    assert values["dbt"]["select"] == "source:demo+"


def test_layers_override_in_order(use_dir):
    write(use_dir / "defaults.airflow.yaml", "owner: platform\nretries: 5\nenv: {A: from-file, B: from-file}\n")
    write(
        use_dir / "demo.airflow.yaml",
        "retries: 7\nenv: {B: null, C: from-sidecar}\nkubernetes: {image_tag: 9.9.9}\n",
    )
    variable = {"owner": "variable", "retries": 6, "env": {"A": "from-var"}}
    getter = variables(landfall_airflow_defaults=json.dumps(variable))
    [item], errors = discovery.discover(getter)
    assert errors == []
    values = item.settings
    assert values["owner"] == "variable"  # the Variable beats defaults.airflow.yaml
    assert values["retries"] == 7  # the sidecar beats both
    assert values["env"] == {"A": "from-var", "C": "from-sidecar"}  # null removes B
    assert values["kubernetes"]["image_tag"] == "9.9.9"
    assert values["kubernetes"]["namespace"] == "landfall"  # untouched keys keep their defaults


def test_sidecar_selects_streams_and_renames_dag(use_dir):
    write(use_dir / "demo.airflow.yaml", "dag_id: demo_orders\nstreams: [orders]\nschedule: '15 * * * *'\n")
    [item], errors = discovery.discover(no_variables)
    assert errors == []
    assert item.settings["dag_id"] == "demo_orders"
    assert item.settings["streams"] == ["orders"]
    dag = factory.build_dag(item)
    assert sorted(dag.task_ids) == ["check", "extract"]


@pytest.mark.parametrize(
    ("run_mode", "sidecar", "env", "expected"),
    [
        ("kubernetes", "", {}, False),  # auto: no dbt image, no dbt task
        ("kubernetes", "dbt: {image: 'registry.example.com/dbt:1'}\n", {}, True),
        ("kubernetes", "dbt: {enabled: false, image: 'registry.example.com/dbt:1'}\n", {}, False),
        ("local", "", {"LANDFALL_DBT_PROJECT_DIR": "/nonexistent"}, False),
        ("local", "", {"LANDFALL_DBT_PROJECT_DIR": "/nonexistent", "LANDFALL_DBT_COMMAND": "true"}, True),
        ("local", "", {"LANDFALL_DBT_PROJECT_DIR": "/"}, True),  # the project folder exists
    ],
)
def test_dbt_task_is_automatic(use_dir, monkeypatch, run_mode, sidecar, env, expected):
    monkeypatch.setenv("LANDFALL_AIRFLOW_MODE", run_mode)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if sidecar:
        write(use_dir / "demo.airflow.yaml", sidecar)
    [dag] = factory.build_all_dags(no_variables)
    assert ("dbt_build" in dag.task_ids) is expected


def test_dbt_enabled_without_image_is_an_error(use_dir):
    write(use_dir / "demo.airflow.yaml", "dbt: {enabled: true}\n")
    with pytest.raises(factory.LandfallDagError, match=r"dbt\.image"):
        factory.build_all_dags(no_variables)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ("retires: 3\n", "unknown key 'retires'"),
        ("kubernetes: {imagetag: x}\n", "unknown key 'kubernetes.imagetag'"),
        ("streams: [invoices]\n", "does not define"),
        ("partial_policy: ignore\n", "partial_policy"),
        ("retry_delay: soon\n", "retry_delay must be a duration"),
        ("start_date: yesterday\n", "start_date"),
        ("timezone: Mars/Olympus\n", "timezone"),
        ("on_failure_callback: notify\n", "on_failure_callback"),
        ("retry_exponential_backoff: true\n", "retry_exponential_backoff"),
        ("max_active_runs: 0\n", "max_active_runs"),
        ("kubernetes: {env_from_secrets: shop-api}\n", "kubernetes.env_from_secrets must be a list"),
        ("env: {A: [1, 2]}\n", "env.A must be a scalar"),
    ],
)
def test_invalid_settings_name_file_and_key(use_dir, sidecar, message):
    path = write(use_dir / "demo.airflow.yaml", sidecar)
    connectors, errors = discovery.discover(no_variables)
    assert connectors == []
    [error] = errors
    assert message in error
    assert str(path) in error


def test_invalid_config_is_an_import_error_unless_skipped(use_dir, monkeypatch):
    write(use_dir / "broken.yaml", "version: 1\nsource: {name: Broken}\nstreams: [{name: a}]\n")
    with pytest.raises(factory.LandfallDagError, match=r"broken\.yaml"):
        factory.build_all_dags(no_variables)
    monkeypatch.setenv("LANDFALL_AIRFLOW_ON_INVALID_CONFIG", "skip")
    dags = factory.build_all_dags(no_variables)
    assert [dag.dag_id for dag in dags] == ["landfall_demo"]


def test_duplicate_dag_ids_are_reported(use_dir):
    shutil.copy(DEMO, use_dir / "demo_copy.yaml")
    connectors, errors = discovery.discover(no_variables)
    assert [item.config.path.name for item in connectors] == ["demo.yaml"]
    assert len(errors) == 1 and "already used" in errors[0]


def test_sidecars_and_defaults_are_not_connector_configs(use_dir):
    write(use_dir / "demo.airflow.yaml", "retries: 1\n")
    write(use_dir / "defaults.airflow.yaml", "retries: 2\n")
    write(use_dir / "notes.txt", "not yaml")
    assert [path.name for path in discovery.config_files(use_dir, no_variables)] == ["demo.yaml"]


def test_config_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LANDFALL_CONFIG_DIR", str(tmp_path / "from-env"))
    assert discovery.config_dir(no_variables) == tmp_path / "from-env"
    getter = variables(landfall_config_dir=str(tmp_path / "from-variable"))
    assert discovery.config_dir(getter) == tmp_path / "from-variable"
    monkeypatch.delenv("LANDFALL_CONFIG_DIR")
    expected = discovery.DAGS_FOLDER / "configs"
    if not expected.is_dir():
        expected = discovery.DAGS_FOLDER.parent / "config-examples"
    assert discovery.config_dir(no_variables) == expected


def test_configs_listed_in_a_variable(use_dir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    other = write(elsewhere / "shop.yaml", "version: 1\nsource: {name: shop}\nstreams: [{name: orders}]\n")
    getter = variables(landfall_configs=json.dumps([str(other)]))
    [item], errors = discovery.discover(getter)
    assert errors == [] and item.config.source == "shop"
    _, errors = discovery.discover(variables(landfall_configs="demo.yaml"))
    assert errors and "JSON list" in errors[0]


def test_real_variables_are_read_through_airflow(monkeypatch, config_dir):
    """AIRFLOW_VAR_* is Airflow's own Variable source, checked before the database."""
    monkeypatch.setenv("LANDFALL_CONFIG_DIR", "/nonexistent")
    monkeypatch.setenv("AIRFLOW_VAR_LANDFALL_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("AIRFLOW_VAR_LANDFALL_AIRFLOW_DEFAULTS", '{"retries": 9}')
    [item], errors = discovery.discover()
    assert errors == [] and item.settings["retries"] == 9
    monkeypatch.setenv("LANDFALL_AIRFLOW_VARIABLES", "false")
    assert discovery.discover() == ([], [])


def test_failure_callback_is_imported_and_attached(use_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "pymodules"))
    write(use_dir / "demo.airflow.yaml", "on_failure_callback: landfall_test_callbacks:record\n")
    [dag] = factory.build_all_dags(no_variables)
    import landfall_test_callbacks

    callbacks = dag.get_task("extract").on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert landfall_test_callbacks.record in callbacks


def test_missing_failure_callback_is_reported(use_dir):
    write(use_dir / "demo.airflow.yaml", "on_failure_callback: no_such_module:notify\n")
    with pytest.raises(factory.LandfallDagError, match="no_such_module"):
        factory.build_all_dags(no_variables)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90), ("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5h", 5400), ("250ms", 0.25)],
)
def test_durations(value, seconds):
    assert settings.parse_duration(value, key="k", origin="o") == dt.timedelta(seconds=seconds)


def test_start_date_without_offset_is_in_the_dag_timezone():
    parsed = settings.parse_date("2024-01-01", key="start_date", origin="o", timezone="Europe/Paris")
    assert parsed.utcoffset() == dt.timedelta(hours=1)


def test_backoff_multiplier_maps_to_each_airflow(use_dir):
    [dag] = factory.build_all_dags(no_variables)
    value = dag.get_task("extract").retry_exponential_backoff
    assert value == (2.0 if AIRFLOW_3 else True)


def test_readme_settings_block_is_valid_and_shows_the_defaults(tmp_path):
    """dags/README.md documents every key with its default; keep it true."""
    readme = (discovery.DAGS_FOLDER / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = "version: 1\nsource: {name: shop}\nstreams: [{name: orders}]\n"
    write(tmp_path / "shop.yaml", config)
    [plain], errors = discovery.discover(variables(landfall_config_dir=str(tmp_path)))
    assert errors == []
    write(tmp_path / "shop.airflow.yaml", block)
    [documented], errors = discovery.discover(variables(landfall_config_dir=str(tmp_path)))
    assert errors == []
    assert documented.settings == plain.settings


def test_every_setting_is_documented_in_the_readme():
    readme = (discovery.DAGS_FOLDER / "README.md").read_text()
    documented = yaml.safe_load(readme.split("```yaml\n", 1)[1].split("```", 1)[0])

    def keys(tree, prefix=""):
        for key, value in tree.items():
            yield prefix + key
            if isinstance(value, dict) and key not in ("env", "labels", "annotations", "resources", "node_selector"):
                yield from keys(value, prefix + key + ".")

    assert set(keys(documented)) == set(keys(settings.DEFAULTS))
