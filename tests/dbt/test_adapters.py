"""`dbt parse` of the project under each warehouse adapter (installed from
tests/tools/dbt-adapters.txt by run.sh into LANDFALL_DBT_ADAPTERS_VENV): sources generated with
`landfall dbt-sources --adapter X --staging`, the vendored stage_external_sources macros, and a
profiles.yml of dummy credentials (parse opens no connection)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import real_landfall
from conftest import DBT_PROJECT, ROOT

STRIPE_CONFIG = ROOT / "config-examples" / "stripe.yaml"

PROFILES = """\
landfall:
  target: snowflake
  outputs:
    snowflake: {type: snowflake, account: dummy-account, user: dummy, password: dummy, role: dummy,
                database: analytics, warehouse: dummy, schema: landfall, threads: 1}
    bigquery: {type: bigquery, method: oauth, project: dummy-project, dataset: landfall, threads: 1}
    databricks: {type: databricks, host: dummy.cloud.databricks.com, http_path: /sql/1.0/warehouses/dummy,
                 token: dummy, catalog: main, schema: landfall, threads: 1}
    redshift: {type: redshift, host: dummy.example.com, user: dummy, password: dummy, port: 5439,
               dbname: analytics, schema: landfall, threads: 1}
"""

# adapter -> (stream location, a partition property only that adapter needs)
EXPECTED = {
    "snowflake": ("@raw.landfall.landing/stripe/charges/", "expression"),
    "bigquery": ("gs://lake/landfall/stripe/charges/*", None),
    "databricks": ("s3://lake/landfall/stripe/charges", None),
    "redshift": ("s3://lake/landfall/stripe/charges/", "path_macro"),
}
ROOTS = {"snowflake": "@raw.landfall.landing", "bigquery": "gs://lake/landfall", "databricks": "s3://lake/landfall", "redshift": "s3://lake/landfall"}


def adapters_dbt() -> Path:
    venv = os.environ.get("LANDFALL_DBT_ADAPTERS_VENV")
    if not venv:
        pytest.skip("LANDFALL_DBT_ADAPTERS_VENV unset: run tests/dbt/run.sh, which installs the adapters")
    return Path(venv) / "bin" / "dbt"


@pytest.mark.parametrize("adapter", sorted(EXPECTED))
def test_dbt_parse_under_adapter(adapter, tmp_path):
    dbt = adapters_dbt()
    binary = real_landfall.require_landfall(tmp_path)
    project = tmp_path / "project"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    (project / "profiles.yml").write_text(PROFILES)
    models = project / "models"
    # the demo with the root from the var, stripe with --location
    real_landfall.generate_sources(binary, models / "sources" / "demo", models / "staging" / "demo")
    real_landfall.dbt_sources(binary, real_landfall.DEMO_CONFIG, "--adapter", adapter, "--out", str(models / "sources" / "demo"))
    real_landfall.dbt_sources(binary, STRIPE_CONFIG, "--adapter", adapter, "--location", ROOTS[adapter] + "/",
                              "--out", str(models / "sources"), "--staging", str(models / "staging" / "stripe"))
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_LOG_PATH": str(tmp_path / "logs"),
           "LANDFALL_DBT_DEMO": "true", "LANDFALL_LANDING_URL": "s3://from-env/landing"}
    proc = subprocess.run([str(dbt), "parse", "--warn-error", "--target", adapter, "--profiles-dir", str(project), "--project-dir", str(project)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"Registered adapter: {adapter}" in proc.stdout

    manifest = json.loads((project / "target" / "manifest.json").read_text())
    charges = manifest["sources"]["source.landfall.stripe.charges"]
    location, partition_key = EXPECTED[adapter]
    assert charges["external"]["location"] == location
    partitions = charges["external"]["partitions"]
    assert partitions[0]["name"] == "extracted_date"
    if partition_key:
        assert partition_key in json.dumps(partitions[0]), partitions[0]
    assert all(column["data_type"] for column in charges["columns"].values())
    assert "extracted_date" not in charges["columns"]
    if adapter == "snowflake":  # the vendored create_external_table reads column.meta.expression
        assert charges["columns"]["filename"]["meta"]["expression"] == "metadata$filename"
    demo = manifest["sources"]["source.landfall.demo.customers"]["external"]["location"]
    if adapter != "snowflake":
        assert demo == "s3://from-env/landing/demo/customers" + ("/*" if adapter == "bigquery" else "/" if adapter == "redshift" else "")
    macros = manifest["macros"]
    for name in ("stage_external_sources", f"{'spark' if adapter == 'databricks' else adapter}__create_external_table"):
        assert f"macro.landfall.{name}" in macros, name
    assert any(uid.startswith("model.landfall.stg_stripe__events") for uid in manifest["nodes"])
