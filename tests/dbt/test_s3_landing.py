"""The same dbt build over landed files in an S3 emulator (moto), read through duckdb httpfs."""

from __future__ import annotations

import uuid

import landing
import real_landfall


def build_from_s3(project, s3_client, s3_endpoint, landing_dir):
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    assert landing.upload_tree(landing_dir, s3_client, bucket, "landfall/prod") > 0
    project.use_s3(s3_endpoint)
    project.env["LANDFALL_LANDING_URL"] = f"s3://{bucket}/landfall/prod/"
    result = project.build()
    assert result.returncode == 0, result.output
    assert result.failed() == set()
    files = project.query("select distinct _landed_file from stg_demo__orders")
    assert all(f.startswith(f"s3://{bucket}/landfall/prod/demo/orders/") for (f,) in files)
    return result


def test_build_over_fixture_landing_in_s3(project, landing_dir, s3_client, s3_endpoint):
    state = landing.land_demo_initial(landing_dir)
    build_from_s3(project, s3_client, s3_endpoint, landing_dir)
    for stream in ("customers", "orders", "products"):
        assert project.query(f"select count(*) from stg_demo__{stream}")[0][0] == len(state[stream])
    freshness = project.freshness()
    assert freshness.returncode == 0, freshness.output


def test_duplicated_part_in_s3_fails(project, landing_dir, s3_client, s3_endpoint):
    landing.land_demo_initial(landing_dir)
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    landing.upload_tree(landing_dir, s3_client, bucket, "")
    part = next(k["Key"] for k in s3_client.list_objects_v2(Bucket=bucket, Prefix="demo/products/")["Contents"])
    s3_client.copy_object(Bucket=bucket, Key=part.replace("part-00000", "part-00001"), CopySource={"Bucket": bucket, "Key": part})
    project.use_s3(s3_endpoint)
    project.env["LANDFALL_LANDING_URL"] = f"s3://{bucket}"
    result = project.build()
    assert result.returncode != 0
    assert result.failed_matching("landfall_no_duplicate_landed_rows", "demo_products"), result.failed()
    assert result.failed_matching("landfall_manifest_rows_reconcile"), result.failed()


def test_build_over_real_landfall_landing_in_s3(project, landing_dir, s3_client, s3_endpoint, tmp_path):
    binary = real_landfall.require_landfall(tmp_path)
    real_landfall.land_with_landfall(binary, landing_dir, tmp_path)
    real_landfall.generate_sources(
        binary, project.dir / "models" / "sources" / "demo", project.dir / "models" / "staging" / "demo"
    )
    build_from_s3(project, s3_client, s3_endpoint, landing_dir)
