"""Generated staging (`landfall dbt-sources --staging`) for the demo and a non-demo config in
one project, the demo switched off in a project with its own source, and source tests that
read only recent partitions."""

from __future__ import annotations

import datetime as dt
import shutil

import landing
import real_landfall
import sources_format
from conftest import ROOT

STRIPE_CONFIG = ROOT / "config-examples" / "stripe.yaml"
STRIPE = {
    "customers": landing.Stream("customers", "GET /v1/customers", ["id"], None),
    "charges": landing.Stream("charges", "GET /v1/charges", ["id"], "created"),
    "events": landing.Stream("events", "GET /v1/events", ["id"], "created"),
}


def land_stripe(root, now):
    first = landing.Run(root, "stripe", now - dt.timedelta(hours=2))
    first.land(STRIPE["customers"], [{"id": f"cus_{i}", "email": f"c{i}@example.com", "name": f"C {i}", "created": 1704067200 + i, "livemode": False} for i in range(5)])
    first.land(STRIPE["charges"], [{"id": f"ch_{i}", "amount": 100 * i, "currency": "eur", "status": "pending", "customer": f"cus_{i}", "created": 1704067300 + i} for i in range(4)])
    first.land(STRIPE["events"], [{"id": "evt_1", "type": "charge.refunded", "created": 1704067400, "data": {"object": {"id": "ch_1", "object": "charge", "status": "refunded"}}}])
    first.commit()
    second = landing.Run(root, "stripe", now - dt.timedelta(hours=1))
    second.land(STRIPE["customers"], [{"id": "cus_0", "email": "new@example.com", "name": "C 0", "created": 1704067200, "livemode": False}])
    second.land(STRIPE["charges"], [{"id": "ch_1", "amount": 100, "currency": "eur", "status": "succeeded", "customer": "cus_1", "created": 1704067301}])
    second.land(STRIPE["events"], [])
    second.commit()


def test_generated_staging_for_demo_and_stripe_in_one_project(project, landing_dir, tmp_path):
    binary = real_landfall.require_landfall(tmp_path)
    models = project.dir / "models"
    real_landfall.generate_sources(binary, models / "sources" / "demo", models / "staging" / "demo")
    real_landfall.generate_sources(binary, models / "sources", models / "staging" / "stripe", config=STRIPE_CONFIG)
    assert sorted(p.name for p in (models / "staging" / "stripe").iterdir()) == [
        "_stg_stripe.yml", "stg_stripe__charges.sql", "stg_stripe__customers.sql", "stg_stripe__events.sql",
    ]
    now = dt.datetime.now(dt.timezone.utc)
    landing.land_demo_initial(landing_dir)
    land_stripe(landing_dir, now)

    result = project.build()
    assert result.returncode == 0, result.output
    assert result.failed() == set()
    ids = set(result.statuses())
    for expected in ("unique_stg_stripe__customers_id", "not_null_stg_stripe__events__raw", "accepted_values_stg_stripe__charges__source_object",
                     "landfall_matches_regex_stg_demo__orders__payload_sha256", "unique_stg_demo__products_sku"):
        assert any(expected in uid for uid in ids), (expected, sorted(ids))
    # the row-level tests left the sources: only landing integrity is tested there
    source_tests = {uid for uid in ids if uid.startswith("test.") and "stg_" not in uid and "_manifests" not in uid}
    assert source_tests and all("landfall_no_duplicate_landed_rows" in uid for uid in source_tests), sorted(source_tests)
    assert project.query("select email from stg_stripe__customers where id = 'cus_0'") == [("new@example.com",)]
    assert project.query("select status, amount from stg_stripe__charges where id = 'ch_1'") == [("succeeded", 100)]
    assert project.query("select data__object__id, data__object__status from stg_stripe__events") == [("ch_1", "refunded")]

    # a foreign row in the newest version of a record fails the staging envelope tests
    broken = landing.Run(landing_dir, "stripe", now - dt.timedelta(minutes=5))
    entry = broken.land(STRIPE["charges"], [{"id": "ch_2", "amount": 1, "currency": "eur", "status": "failed", "customer": "cus_2", "created": 1704067302}])
    broken.commit()
    part = landing_dir / entry["files"][0]["path"]
    import gzip, json
    line = json.loads(gzip.decompress(part.read_bytes()))
    line["_source_object"] = "refunds"
    part.write_bytes(gzip.compress((json.dumps(line) + "\n").encode()))
    result = project.build()
    assert result.failed() == result.failed_matching("accepted_values_stg_stripe__charges__source_object"), result.failed()
    assert result.failed()


def test_demo_is_off_in_a_project_with_its_own_source(project, landing_dir):
    """A project that adds a source and never lands the demo builds, even with --warn-error."""
    shop = {"version": 1, "source": {"name": "shop"}, "streams": [{"name": "flags", "primary_key": ["key"], "columns": {"key": "string"}}]}
    (project.dir / "models" / "sources" / "shop.yml").write_text(sources_format.render_sources(shop))
    (project.dir / "models" / "staging" / "stg_shop__flags.sql").write_text("{{ landfall.landfall_staging('shop', 'flags') }}\n")
    run = landing.Run(landing_dir, "shop", dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    run.land(landing.Stream("flags", "GET /flags", ["key"], None), [{"key": "a"}])
    run.commit()

    project.env.pop("LANDFALL_DBT_DEMO")
    result = project.dbt("--warn-error", "build")
    assert result.returncode == 0, result.output
    assert "model.landfall.stg_shop__flags" in result.statuses()
    assert not any("demo" in uid for uid in result.statuses()), sorted(result.statuses())

    # the same project with the demo switched on fails: nothing of the demo was landed
    result = project.build("--vars", "{landfall_demo: true}")
    assert result.returncode != 0
    assert "No files found" in result.output


def test_source_tests_read_recent_partitions_only(project, landing_dir):
    now = dt.datetime.now(dt.timezone.utc)
    old = landing.Run(landing_dir, "demo", now - dt.timedelta(days=10))
    entry = old.land(landing.DEMO_STREAMS["products"], [landing.product(i) for i in range(1, 4)])
    old.commit()
    landing.land_demo_initial(landing_dir, now)
    part = landing_dir / entry["files"][0]["path"]
    shutil.copy(part, part.with_name("part-00009.jsonl.gz"))  # a copied part, 10 days old

    result = project.build()
    assert result.returncode == 0, result.output  # the default lookback (3 days) skips it

    result = project.build("--vars", "{landfall_partition_lookback_days: 30}")
    assert result.failed_matching("landfall_no_duplicate_landed_rows", "demo_products"), result.failed()
    assert result.failed_matching("landfall_manifest_rows_reconcile"), result.failed()
