"""dbt build over data landed by the Python fixture writer (landing.py): the positive path
with updates, a crashed run and a late older version, then the cases that must fail."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import landing
import sources_format

STAGING = ["stg_demo__customers", "stg_demo__orders", "stg_demo__products"]


def find(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def test_build_dedupes_to_latest_versions_and_stays_fresh(project, landing_dir):
    state = landing.land_demo_initial(landing_dir)

    result = project.build()
    assert result.returncode == 0, result.output
    assert result.failed() == set()
    assert {r["status"] for r in result.results} <= {"success", "pass"}
    assert len([r for r in result.results if r["unique_id"].startswith("test.")]) >= 60

    freshness = project.freshness()
    assert freshness.returncode == 0, freshness.output
    assert {r["status"] for r in freshness.results} == {"pass"}
    assert len(freshness.results) == 4  # customers, orders, products, _manifests

    def check_staging():
        for model, key in (("stg_demo__customers", "customers"), ("stg_demo__orders", "orders"), ("stg_demo__products", "products")):
            assert project.query(f"select count(*) from {model}")[0][0] == len(state[key])
        rows = dict(project.query("select id, name from stg_demo__customers where id in (1, 20, 21, 300)"))
        assert rows == {1: "Renamed 1", 20: "Renamed 20", 21: "Customer 21", 300: "Customer 300"}
        orders = dict(project.query("select id, status from stg_demo__orders where id in ('ord_000001', 'ord_000031')"))
        assert orders == {"ord_000001": "refunded", "ord_000031": "paid"}
        price, active = project.query("select price, active from stg_demo__products where sku = 'SKU-0007'")[0]
        assert (price, active) == (99.0, True)
        assert project.query("select active from stg_demo__products where sku = 'SKU-0005'")[0][0] is False
        typed = project.query(
            "select typeof(id), typeof(updated_at), typeof(ingested_at), bool_or(is_deleted), count(deleted_at) "
            "from stg_demo__customers group by all"
        )
        assert typed == [("BIGINT", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE", False, 0)]

    check_staging()

    # Incremental run: run 3 lands a late, older version of customer 1 and 50 new orders.
    landing.land_demo_late(landing_dir, state)
    result = project.build()
    assert result.returncode == 0, result.output
    check_staging()
    assert project.query("select count(*) from stg_demo__orders where id > 'ord_000600'")[0][0] == 50
    # the second build merged into the staged tables instead of rebuilding them
    for model in STAGING:
        executed = (project.dir / "target" / "run" / "landfall" / "models" / "staging" / "demo" / f"{model}.sql").read_text()
        assert "MERGE INTO" in executed and "_source_record_id = DBT_INTERNAL_DEST._source_record_id" in executed


def test_duplicated_part_file_fails_duplicate_and_reconcile_tests(project, landing_dir):
    landing.land_demo_initial(landing_dir)
    part = find(landing_dir, "demo/orders/*/run_id=*/part-00001.jsonl.gz")[0]
    shutil.copy(part, part.with_name("part-00007.jsonl.gz"))

    result = project.build()
    assert result.returncode != 0
    assert result.failed_matching("landfall_no_duplicate_landed_rows", "demo_orders"), result.failed()
    assert result.failed_matching("landfall_manifest_rows_reconcile"), result.failed()
    assert not result.failed_matching("landfall_no_duplicate_landed_rows", "demo_customers")
    assert result.statuses()["model.landfall.stg_demo__orders"] == "skipped"


def test_manifest_rows_written_disagreeing_with_files_fails_reconcile(project, landing_dir):
    state = landing.land_demo_initial(landing_dir)
    run = state["runs"][1]
    manifest = find(landing_dir, f"demo/_manifests/*/{run.run_id}.json")[0]
    body = json.loads(manifest.read_text())
    body["streams"][0]["rows_written"] += 1  # customers
    manifest.write_text(json.dumps(body, separators=(",", ":")) + "\n")

    result = project.build()
    assert result.returncode != 0
    assert result.failed() == result.failed_matching("landfall_manifest_rows_reconcile"), result.failed()
    assert len(result.failed()) == 1


def test_missing_listed_part_fails_files_exist(project, landing_dir):
    landing.land_demo_initial(landing_dir)
    find(landing_dir, "demo/orders/*/run_id=*/part-00002.jsonl.gz")[0].unlink()

    result = project.build()
    assert result.returncode != 0
    assert result.failed_matching("landfall_manifest_files_exist"), result.failed()
    assert result.failed_matching("landfall_manifest_rows_reconcile"), result.failed()


def test_null_primary_key_fails_staging_not_null(project, landing_dir):
    state = landing.land_demo_initial(landing_dir)
    run = landing.Run(landing_dir, "demo", state["now"] - dt.timedelta(minutes=30))
    run.land(landing.DEMO_STREAMS["customers"], [landing.customer(301, landing.iso(4)), {**landing.customer(0, landing.iso(4)), "id": None}])
    run.commit()

    result = project.build()
    assert result.returncode != 0
    # row-level tests live on the staging models: the null key collapses into one staged row
    assert result.failed() == {
        *result.failed_matching("not_null_stg_demo__customers__source_record_id"),
        *result.failed_matching("not_null_stg_demo__customers_id"),
    }, result.failed()
    assert len(result.failed()) == 2


def test_null_primary_key_in_raw_fails_staging_not_null(project, landing_dir):
    """A writer that puts text in _source_record_id for a record whose key is null is still caught."""
    state = landing.land_demo_initial(landing_dir)
    run = landing.Run(landing_dir, "demo", state["now"] - dt.timedelta(minutes=30))
    broken = {**landing.customer(0, landing.iso(4)), "id": None}
    entry = run.land(landing.DEMO_STREAMS["customers"], [broken])
    run.commit()
    part = landing_dir / entry["files"][0]["path"]
    line = json.loads(gzip.decompress(part.read_bytes()))
    line["_source_record_id"] = "null"
    body = gzip.compress((json.dumps(line) + "\n").encode())
    part.write_bytes(body)

    result = project.build()
    assert result.returncode != 0
    assert result.failed() == result.failed_matching("not_null_stg_demo__customers_id"), result.failed()
    assert len(result.failed()) == 1


def test_bad_payload_hash_and_foreign_source_fail_envelope_tests(project, landing_dir):
    state = landing.land_demo_initial(landing_dir)
    run = landing.Run(landing_dir, "demo", state["now"] - dt.timedelta(minutes=30))
    entry = run.land(landing.DEMO_STREAMS["products"], [landing.product(1)])
    run.commit()
    part = landing_dir / entry["files"][0]["path"]
    line = json.loads(gzip.decompress(part.read_bytes()))
    line["_payload_sha256"] = line["_payload_sha256"].upper()
    line["_source_system"] = "other"
    part.write_bytes(gzip.compress((json.dumps(line) + "\n").encode()))

    result = project.build()
    assert result.returncode != 0
    assert result.failed_matching("landfall_matches_regex", "products__payload_sha256"), result.failed()
    assert result.failed_matching("accepted_values", "products__source_system"), result.failed()


SHOP_CONFIG = {
    "version": 1,
    "source": {"name": "shop"},
    "streams": [
        {
            "name": "accounts",
            "primary_key": ["org", "id"],
            "incremental": {"cursor_field": "updated_at"},
            "columns": {
                "org": "string",
                "id": "integer",
                "/profile/tier": "string",
                "updated_at": "timestamp",
                "deleted_at": "timestamp",
            },
            "delete_marker": {"field": "deleted_at"},
            "freshness": {"warn_after": "90m", "error_after": "6h"},
        },
        {
            "name": "flags",
            "primary_key": ["key"],
            "columns": {"key": "string", "state": "string"},
            "delete_marker": {"field": "state", "value": "archived"},
            "freshness": None,
        },
    ],
}


def test_composite_keys_soft_deletes_and_stream_freshness(project, landing_dir):
    (project.dir / "models" / "sources" / "shop.yml").write_text(sources_format.render_sources(SHOP_CONFIG))
    for stream in ("accounts", "flags"):
        (project.dir / "models" / "staging" / f"stg_shop__{stream}.sql").write_text(
            f"{{{{ landfall_staging('shop', '{stream}') }}}}\n"
        )
    now = dt.datetime.now(dt.timezone.utc)
    accounts = landing.Stream("accounts", "GET /accounts", ["org", "id"], "updated_at")
    flags = landing.Stream("flags", "GET /flags", ["key"], None)

    def account(org, i, updated, deleted=None, tier="gold"):
        return {"org": org, "id": i, "profile": {"tier": tier}, "updated_at": updated, "deleted_at": deleted}

    run1 = landing.Run(landing_dir, "shop", now - dt.timedelta(hours=3))
    run1.land(accounts, [account("acme", 1, landing.iso(1)), account("acme", 2, landing.iso(1)), account("beta", 1, landing.iso(1), tier="free")])
    run1.land(flags, [{"key": "a", "state": "active"}, {"key": "b", "state": "active"}])
    run1.commit()
    run2 = landing.Run(landing_dir, "shop", now - dt.timedelta(hours=2))
    run2.land(accounts, [account("acme", 1, landing.iso(2), deleted=landing.iso(2, 30))])
    run2.land(flags, [{"key": "a", "state": "archived"}, {"key": "b", "state": "active"}])
    run2.commit()
    landing.land_demo_initial(landing_dir)

    result = project.build()
    assert result.returncode == 0, result.output
    rows = project.query(
        "select org, id, profile__tier, is_deleted, deleted_at, _source_record_id from stg_shop__accounts order by org, id"
    )
    deleted_at = dt.datetime(2024, 1, 3, 0, 0, 30, tzinfo=dt.timezone.utc)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("acme", 1, "gold", True),
        ("acme", 2, "gold", False),
        ("beta", 1, "free", False),
    ]
    assert rows[0][4] == deleted_at and rows[1][4] is None
    assert rows[0][5] == '["acme",1]'
    flag_rows = project.query("select key, is_deleted, deleted_at is not null from stg_shop__flags order by key")
    assert flag_rows == [("a", True, True), ("b", False, False)]

    freshness = project.freshness()
    statuses = {r["unique_id"]: r["status"] for r in freshness.results}
    assert statuses["source.landfall.shop.accounts"] == "warn"  # landed 2h ago, warn_after 90m
    assert "source.landfall.shop.flags" not in statuses  # freshness: null
    assert statuses["source.landfall.shop._manifests"] == "pass"
    assert freshness.returncode == 0, freshness.output


def test_landing_url_default_and_normalisation(project):
    # s3:// with a trailing slash is covered by test_s3_landing.py
    cases = {
        None: "'../landing/demo/customers/**/*.jsonl.gz'",
        "file:///data/lake/": "'/data/lake/demo/customers/**/*.jsonl.gz'",
    }
    for url, expected in cases.items():
        if url is None:
            project.env.pop("LANDFALL_LANDING_URL")
        else:
            project.env["LANDFALL_LANDING_URL"] = url
        result = project.dbt("parse")
        assert result.returncode == 0, result.output
        manifest = json.loads((project.dir / "target" / "manifest.json").read_text())
        relation = manifest["sources"]["source.landfall.demo.customers"]["relation_name"]
        assert relation.startswith("read_json_auto(" + expected), relation
