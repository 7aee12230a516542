"""The project used as a package: another dbt project installs dbt/ as a local package,
disables the demo, generates its own sources and stages them with landfall's macro."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import landing
import sources_format
from conftest import DBT_PROJECT, VENV_BIN
from test_fixture_landing import SHOP_CONFIG

CONSUMER_PROJECT = """\
name: analytics
version: "1.0.0"
config-version: 2
profile: analytics
models:
  landfall:
    +enabled: false
sources:
  landfall:
    +enabled: false
"""

CONSUMER_PROFILE = """\
analytics:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('LANDFALL_DUCKDB_PATH') }}"
      threads: 2
"""


def test_consumer_project_stages_its_own_source_with_the_package(tmp_path, project):
    consumer = tmp_path / "analytics"
    (consumer / "models" / "staging").mkdir(parents=True)
    (consumer / "dbt_project.yml").write_text(CONSUMER_PROJECT)
    (consumer / "profiles.yml").write_text(CONSUMER_PROFILE)
    (consumer / "packages.yml").write_text(f"packages:\n  - local: {DBT_PROJECT}\n")
    (consumer / "models" / "shop.yml").write_text(sources_format.render_sources(SHOP_CONFIG))
    (consumer / "models" / "staging" / "stg_shop__accounts.sql").write_text(
        "{{ landfall.landfall_staging('shop', 'accounts') }}\n"
    )
    (consumer / "models" / "staging" / "stg_shop__flags.sql").write_text(
        "{{ landfall.landfall_staging('shop', 'flags') }}\n"
    )

    now = dt.datetime.now(dt.timezone.utc)
    run = landing.Run(project.landing, "shop", now - dt.timedelta(minutes=10))
    accounts = landing.Stream("accounts", "GET /accounts", ["org", "id"], "updated_at")
    run.land(accounts, [{"org": "acme", "id": i, "profile": {"tier": "gold"}, "updated_at": landing.iso(1, i), "deleted_at": None} for i in range(5)])
    run.land(landing.Stream("flags", "GET /flags", ["key"], None), [{"key": "a", "state": "active"}])
    run.commit()

    env = {**project.env, "DBT_LOG_PATH": str(tmp_path / "logs")}

    def dbt(*args):
        return subprocess.run(
            [str(VENV_BIN / "dbt"), *args, "--profiles-dir", str(consumer), "--project-dir", str(consumer)],
            cwd=consumer, env=env, capture_output=True, text=True, timeout=300,
        )

    deps = dbt("deps")
    assert deps.returncode == 0, deps.stdout + deps.stderr
    build = dbt("build")
    assert build.returncode == 0, build.stdout + build.stderr
    results = json.loads((consumer / "target" / "run_results.json").read_text())["results"]
    ids = {r["unique_id"] for r in results}
    assert "model.analytics.stg_shop__accounts" in ids
    assert not any(".demo" in uid or "stg_demo" in uid for uid in ids), sorted(ids)
    assert any("landfall_manifest_rows_reconcile" in uid for uid in ids)
    assert project.query("select count(*), count(distinct _source_record_id) from stg_shop__accounts") == [(5, 5)]
