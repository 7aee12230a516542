"""dbt build over streams whose bodies are not JSON: config-examples/cbr.yaml (XML in
windows-1251) and a CSV stream, both read from a loopback server by the real binary, then
`landfall dbt-sources --staging` and `dbt build` with the project's tests.

Their `_raw` is the row as sent (an XML element, a CSV line), so the staging models read the
declared columns from `_record`, the parsed form (`record_column: _record` in the source's
meta): the test checks that the columns arrive typed and exact, Cyrillic included, and that a
second snapshot of the same rates stages each currency once.
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import real_landfall
from conftest import ROOT

CBR_EXAMPLE = ROOT / "config-examples" / "cbr.yaml"

RATES = """<?xml version="1.0" encoding="windows-1251"?>
<ValCurs Date="02.03.2024" name="Foreign Currency Market">
<Valute ID="R01235"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name><Value>92,5058</Value><VunitRate>92,5058</VunitRate></Valute>
<Valute ID="R01239"><NumCode>978</NumCode><CharCode>EUR</CharCode><Nominal>1</Nominal><Name>Евро</Name><Value>100,1943</Value><VunitRate>100,1943</VunitRate></Valute>
<Valute ID="R01375"><NumCode>156</NumCode><CharCode>CNY</CharCode><Nominal>10</Nominal><Name>Китайский юань</Name><Value>127,9913</Value><VunitRate>12,7991</VunitRate></Valute>
</ValCurs>
""".encode("windows-1251")

ORDERS = (
    b"id,customer,amount,note\r\n"
    b'1,acme,12.50,"first, with a comma"\r\n'
    b'2,globex,7.25,"two\nlines"\r\n'
    b"3,initech,100.00,plain\r\n"
)

CSV_CONFIG = """version: 1
source:
  name: shop_csv
  base_url: {base_url}
streams:
  - name: orders
    path: /orders.csv
    format: csv
    primary_key: [id]
    columns: {{id: integer, customer: string, amount: number, note: string}}
landing:
  url: ${{env:LANDFALL_LANDING_URL}}
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/scripts/XML_daily.asp"):
            body, kind = RATES, "application/xml; charset=windows-1251"
        elif self.path == "/orders.csv":
            body, kind = ORDERS, "text/csv"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def vendor():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_dbt_build_over_xml_and_csv_streams(project, landing_dir, tmp_path, vendor):
    binary = real_landfall.require_landfall(tmp_path)
    csv_config = tmp_path / "shop_csv.yaml"
    csv_config.write_text(CSV_CONFIG.format(base_url=vendor))
    project.env.pop("LANDFALL_DBT_DEMO")  # the shipped demo source stays off, as in a real project
    env = {**os.environ, "CBR_API_URL": vendor, "LANDFALL_LANDING_URL": landing_dir.as_uri()}

    def land(config) -> None:
        proc = subprocess.run(
            [str(binary), "run", "--config", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"landfall run exited {proc.returncode}\n{proc.stderr[-4000:]}"

    for config in (CBR_EXAMPLE, csv_config):
        land(config)
    for name, config in (("cbr", CBR_EXAMPLE), ("shop_csv", csv_config)):
        real_landfall.generate_sources(
            binary,
            project.dir / "models" / "sources" / name,
            project.dir / "models" / "staging" / name,
            config=config,
        )
    sources = (project.dir / "models" / "sources" / "cbr" / "cbr.yml").read_text()
    assert "record_column: _record" in sources, sources

    def build() -> None:
        result = project.build()
        assert result.returncode == 0, result.output
        assert result.failed() == set()
        for source in ("cbr", "shop_csv"):
            assert any(uid.startswith("test.") and source in uid for uid in result.statuses()), result.statuses()

    build()
    rates = project.query(
        'select "_source_record_id", "CharCode", "Name", "Nominal", "Value" from stg_cbr__daily_rates order by 1'
    )
    assert rates == [
        ("R01235", "USD", "Доллар США", 1, "92,5058"),
        ("R01239", "EUR", "Евро", 1, "100,1943"),
        ("R01375", "CNY", "Китайский юань", 10, "127,9913"),
    ]
    orders = project.query("select id, customer, amount, note from stg_shop_csv__orders order by id")
    assert [(id, customer, float(amount), note) for id, customer, amount, note in orders] == [
        (1, "acme", 12.5, "first, with a comma"),
        (2, "globex", 7.25, "two\nlines"),
        (3, "initech", 100.0, "plain"),
    ]

    # A second snapshot of the same day's rates: staging keeps one row per currency.
    land(CBR_EXAMPLE)
    build()
    assert project.query("select count(*), count(distinct _source_record_id) from stg_cbr__daily_rates") == [(3, 3)]
