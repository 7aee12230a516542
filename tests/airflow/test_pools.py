"""`python -m landfall_airflow.pools` creates the pools the DAGs name, against a real
migrated metadata database, and leaves existing pools alone (issue 20)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import DAGS, demo_config


def _configs(tmp_path: Path) -> Path:
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(demo_config(), configs / "demo.yaml")
    shop = (configs / "shop.yaml")
    shop.write_text(demo_config().read_text().replace("name: demo\n", "name: shop\n", 1))
    (configs / "shop.airflow.yaml").write_text(
        "pool: shared_api\npool_slots: 3\ndbt:\n  pool: landfall_dbt\n")
    return configs


def _pools_cli(configs: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LANDFALL_CONFIG_DIR": str(configs), "LANDFALL_AIRFLOW_VARIABLES": "false",
           "PYTHONPATH": str(DAGS)}
    return subprocess.run([sys.executable, "-m", "landfall_airflow.pools", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


# The pools are read and arranged through Airflow's Pool model in this process, against the
# same metadata database the pools CLI writes: each `airflow pools ...` command would start
# Airflow afresh (about 10 s on 2 cores; nine of them made this the slowest test of the suite).
def _pool(name: str) -> dict | None:
    from airflow.models.pool import Pool

    pool = Pool.get_pool(name)
    return None if pool is None else {"slots": pool.slots, "description": pool.description}


def _delete_pool(name: str) -> None:
    from airflow.models.pool import Pool

    if Pool.get_pool(name) is not None:
        Pool.delete_pool(name)


def test_required_pools_follow_the_dag_settings(tmp_path):
    from landfall_airflow import discovery, pools

    os.environ["LANDFALL_CONFIG_DIR"] = str(_configs(tmp_path))
    try:
        connectors, errors = discovery.discover(lambda _key: None)
    finally:
        from conftest import config_dir_under_test

        os.environ["LANDFALL_CONFIG_DIR"] = str(config_dir_under_test())
    assert errors == []
    wanted = {p.name: p.slots for p in pools.required_pools(connectors)}
    # landfall_<source> by default; a task's pool_slots never exceed its pool's size;
    # default_pool (the dbt default) is Airflow's own.
    assert wanted == {"landfall_demo": 2, "shared_api": 3, "landfall_dbt": 2}


def test_missing_pools_are_created_and_existing_ones_kept(tmp_path):
    configs = _configs(tmp_path)
    for name in ("landfall_demo", "shared_api", "landfall_dbt"):
        _delete_pool(name)
        assert _pool(name) is None

    dry = _pools_cli(configs, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "missing\tlandfall_demo\t2" in dry.stdout
    assert _pool("landfall_demo") is None  # a dry run creates nothing

    # an operator has already sized one pool: it must stay as it is
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("shared_api", 7, "sized by hand", include_deferred=False)

    first = _pools_cli(configs)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "created\tlandfall_demo\t2\tlandfall: demo" in first.stdout
    assert "exists\tshared_api" in first.stdout
    assert "created\tlandfall_dbt" in first.stdout
    assert int(_pool("landfall_demo")["slots"]) == 2
    assert int(_pool("landfall_dbt")["slots"]) == 2
    shared = _pool("shared_api")
    assert int(shared["slots"]) == 7 and shared["description"] == "sized by hand"

    again = _pools_cli(configs)
    assert again.returncode == 0
    assert "created" not in again.stdout  # idempotent


def test_pools_cli_rejects_a_pool_size_below_one(tmp_path):
    result = _pools_cli(_configs(tmp_path), "--slots", "0")
    assert result.returncode == 2 and "--slots must be at least 1" in result.stderr
