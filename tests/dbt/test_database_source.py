"""dbt build over a database source's landing: config-examples/postgres.yaml read from the real
PostgreSQL of tests/database/run.sh, which runs this file (the servers are up there); the dbt
suite itself leaves it out (tests/dbt/run.sh). The example's only change: `tls` trusts the
suite's throwaway CA (`verify-full`), as its comment shows.

Two runs: the first lands both tables; then an order is updated (the incremental stream reads
it) and a customer is deleted (the full-refresh stream's next snapshot lacks it). After each,
`landfall dbt-sources --staging` output and `dbt build` (with the project's tests) pass, and
staging holds the table as it is: the updated order's new status, the deleted customer marked
`is_deleted` from the complete snapshot that missed it.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import real_landfall
from conftest import ROOT

POSTGRES_URL = os.environ.get("LANDFALL_TEST_POSTGRES_URL")
TLS_CA = os.environ.get("LANDFALL_TEST_TLS_CA")
EXAMPLE = ROOT / "config-examples" / "postgres.yaml"

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and TLS_CA),
    reason="needs the PostgreSQL of tests/database/run.sh (LANDFALL_TEST_POSTGRES_URL, LANDFALL_TEST_TLS_CA)",
)


def psql(url: str, sql: str) -> str:
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    command = binaries[-1] if binaries else "psql"
    proc = subprocess.run(
        [command, url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def shop() -> str:
    """A fresh database `lf_dbt_shop` with the example's tables; its URL."""
    psql(POSTGRES_URL, "DROP DATABASE IF EXISTS lf_dbt_shop;\nCREATE DATABASE lf_dbt_shop;\n")
    url = with_database(POSTGRES_URL, "lf_dbt_shop")
    psql(
        url,
        """
        CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, amount numeric(12,2) NOT NULL,
                             status text NOT NULL, updated_at timestamptz NOT NULL);
        INSERT INTO orders SELECT g, g % 40 + 1, g * 1.25, 'placed', now() - interval '2 hours' + g * interval '1 second'
        FROM generate_series(1, 300) g;
        CREATE TABLE customers (id bigint PRIMARY KEY, email_domain text, country text, created_at timestamptz NOT NULL,
                                updated_at timestamptz NOT NULL, password_hash text);
        INSERT INTO customers SELECT g, 'example.com', 'DE', now() - interval '1 day', now() - interval '1 day', 'not landed'
        FROM generate_series(1, 40) g;
        """,
    )
    return url


def test_dbt_build_over_the_postgres_example(project, landing_dir, tmp_path, shop):
    binary = real_landfall.require_landfall(tmp_path)
    config = tmp_path / "postgres.yaml"
    text = EXAMPLE.read_text()
    assert "  tls: {mode: prefer}" in text
    config.write_text(
        "\n".join(
            f"  tls: {{mode: verify-full, ca_file: '{TLS_CA}'}}" if line.startswith("  tls: {mode: prefer}") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    project.env.pop("LANDFALL_DBT_DEMO")  # the shipped demo source stays off, as in a real project
    env = {**os.environ, "DATABASE_URL": shop, "LANDFALL_LANDING_URL": landing_dir.as_uri()}

    def land() -> None:
        proc = subprocess.run(
            [str(binary), "run", "--config", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"landfall run exited {proc.returncode}\n{proc.stderr[-4000:]}"

    def build() -> None:
        result = project.build()
        assert result.returncode == 0, result.output
        assert result.failed() == set()
        # the project's tests ran over this source (no duplicate landed rows, unique keys)
        assert any(uid.startswith("test.") and "shop_postgres" in uid for uid in result.statuses()), result.statuses()

    def staged(stream: str) -> dict[int, dict]:
        rows = project.query(f"select _raw, is_deleted from stg_shop_postgres__{stream}")
        return {json.loads(raw)["id"]: {**json.loads(raw), "is_deleted": deleted} for raw, deleted in rows}

    land()
    real_landfall.generate_sources(
        binary,
        project.dir / "models" / "sources" / "shop_postgres",
        project.dir / "models" / "staging" / "shop_postgres",
        config=config,
    )
    build()
    orders, customers = staged("orders"), staged("customers")
    assert sorted(orders) == list(range(1, 301))
    assert sorted(customers) == list(range(1, 41))
    assert "password_hash" not in customers[1], "select: lists the columns landed"
    assert orders[7]["amount"] == 8.75 and orders[7]["status"] == "placed"

    psql(
        shop,
        "UPDATE orders SET status = 'shipped', updated_at = now() WHERE id = 7;\nDELETE FROM customers WHERE id = 3;\n",
    )
    land()
    build()
    orders, customers = staged("orders"), staged("customers")
    assert orders[7]["status"] == "shipped", "the update reached staging"
    assert len(orders) == 300
    assert customers[3]["is_deleted"] is True, "the full refresh's snapshot deleted it"
    assert [id for id, row in customers.items() if row["is_deleted"]] == [3]
