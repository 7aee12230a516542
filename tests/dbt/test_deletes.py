"""Hard deletes reach staging (dbt/README.md, "Deletes"), with the real `landfall run` against
a loopback API whose data changes between runs:

- a full-refresh stream: a key absent from a later complete snapshot is `is_deleted` with
  `deleted_at` = that snapshot's `started_at`; a crashed run (parts, no manifest) and a failed
  run delete nothing;
- a stream with a `deletes` endpoint: the keys it lists are deleted, `deleted_at` from its
  cursor;
- `dbt source freshness` fails (exit 1) on a stale landing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import landing
import real_landfall


class Api:
    """The source: `/items` (full refresh, pages of 2), `/tickets` and `/deleted_tickets`."""

    def __init__(self) -> None:
        self.items = {key: {"id": key, "name": f"Item {key}"} for key in ("a", "b", "c", "d")}
        self.tickets = [{"id": i, "subject": f"T{i}", "updated_at": "2024-02-01T00:00:00Z"} for i in (1, 2, 3)]
        self.deleted_tickets: list[dict] = []
        self.fail_page = None  # an /items page answered with 500
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path == "/items":
                    page = int(query.get("page", ["1"])[0])
                    if page == api.fail_page:
                        return self.send(500, {"error": "boom"})
                    rows = [api.items[key] for key in sorted(api.items)]
                    return self.send(200, {"data": rows[(page - 1) * 2 : page * 2]})
                if url.path == "/tickets":
                    return self.send(200, {"tickets": api.tickets})
                if url.path == "/deleted_tickets":
                    return self.send(200, {"deleted_tickets": api.deleted_tickets})
                return self.send(404, {"error": "not found"})

            def send(self, status, document):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CONFIG = """
version: 1
source:
  name: shop
  base_url: {url}
  retry: {{max_attempts: 1}}
  rate_limit: {{requests_per_second: null}}
streams:
  - name: items
    path: /items
    records_path: /data
    primary_key: [id]
    columns: {{id: string, name: string}}
    pagination: {{type: page_number, page_param: page, page_size_param: per_page, page_size: 2}}
  - name: tickets
    path: /tickets
    records_path: /tickets
    primary_key: [id]
    columns: {{id: integer, subject: string}}
    incremental: {{cursor_field: updated_at, param: updated_since, start: "2024-01-01T00:00:00Z"}}
    deletes:
      path: /deleted_tickets
      records_path: /deleted_tickets
      key: [id]
      incremental: {{cursor_field: deleted_at, param: start_time, start: "1704067200", format: unix_seconds}}
landing:
  url: {landing}
"""


def run(binary: Path, config: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), "run", "--config", str(config)],
        cwd=workdir,
        env={**os.environ, "LANDFALL_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def manifests(landing_dir: Path) -> list[tuple[Path, dict]]:
    found = [(path, json.loads(path.read_text())) for path in (landing_dir / "shop" / "_manifests").rglob("*.json")]
    return sorted(found, key=lambda pair: pair[1]["started_at"])


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_full_refresh_snapshots_and_a_deletes_endpoint_mark_deletes(project, landing_dir, tmp_path):
    binary = real_landfall.require_landfall(tmp_path)
    project.env.pop("LANDFALL_DBT_DEMO")  # only source `shop` is landed
    api = Api()
    try:
        config = tmp_path / "shop.yaml"
        config.write_text(CONFIG.format(url=api.url, landing=landing_dir.as_uri()))
        models = project.dir / "models"
        real_landfall.generate_sources(binary, models / "sources", models / "staging" / "shop", config=config)
        assert (models / "staging" / "shop" / "stg_shop__items.sql").read_text() == (
            "{{ landfall.landfall_staging('shop', 'items', snapshot_deletes=true) }}\n"
        )
        assert (models / "staging" / "shop" / "stg_shop__tickets.sql").read_text() == (
            "{{ landfall.landfall_staging('shop', 'tickets', deletes={'stream': 'tickets__deletes', "
            "'time_format': 'unix_seconds'}) }}\n"
        )
        assert not (models / "staging" / "shop" / "stg_shop__tickets__deletes.sql").exists()
        # the Python reference of the sources format agrees, companion table included
        import sources_format
        import yaml

        assert (models / "sources" / "shop.yml").read_text() == sources_format.render_sources(yaml.safe_load(config.read_text()))

        def deleted(model: str) -> dict:
            return {
                str(key): (is_deleted, deleted_at)
                for key, is_deleted, deleted_at in project.query(f"select id, is_deleted, deleted_at from {model}")
            }

        # snapshot 1: a b c d
        first = run(binary, config, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]

        # c is removed; a run lands it all but crashes before its manifest
        del api.items["c"]
        crashed = run(binary, config, tmp_path)
        assert crashed.returncode == 0, crashed.stderr[-3000:]
        crashed_manifest = manifests(landing_dir)[-1][0]
        crashed_manifest.unlink()
        # ... and a run that fails on its second page
        api.fail_page = 2
        failed = run(binary, config, tmp_path)
        assert failed.returncode != 0
        assert manifests(landing_dir)[-1][1]["streams"][0]["status"] == "failed"
        api.fail_page = None

        result = project.build()
        assert result.returncode == 0, result.output
        assert result.failed() == set()
        assert deleted("stg_shop__items") == {key: (False, None) for key in "abcd"}
        assert deleted("stg_shop__tickets") == {str(i): (False, None) for i in (1, 2, 3)}

        # snapshot 2 (succeeded, without c); ticket 2 is deleted at the source
        api.deleted_tickets = [{"id": 2, "deleted_at": 1767225600}]
        api.tickets = [t for t in api.tickets if t["id"] != 2]
        second = run(binary, config, tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        snapshot = manifests(landing_dir)[-1][1]
        assert snapshot["status"] == "succeeded"
        started = parse_time(snapshot["started_at"])

        expected_items = {"a": (False, None), "b": (False, None), "c": (True, started), "d": (False, None)}
        expected_tickets = {
            "1": (False, None),
            "2": (True, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
            "3": (False, None),
        }
        result = project.build()  # incremental: the staged c and 2 are re-evaluated
        assert result.returncode == 0, result.output
        assert result.failed() == set()
        assert deleted("stg_shop__items") == expected_items
        assert deleted("stg_shop__tickets") == expected_tickets
        assert project.query("select name from stg_shop__items where id = 'c'") == [("Item c",)]  # kept, flagged

        # a third snapshot still without c keeps deleted_at at the snapshot that first missed it
        third = run(binary, config, tmp_path)
        assert third.returncode == 0, third.stderr[-3000:]
        result = project.build()
        assert result.returncode == 0, result.output
        assert deleted("stg_shop__items") == expected_items

        # a rebuild from scratch gives the same answer
        result = project.build("--full-refresh")
        assert result.returncode == 0, result.output
        assert deleted("stg_shop__items") == expected_items
        assert deleted("stg_shop__tickets") == expected_tickets

        # c comes back: live again
        api.items["c"] = {"id": "c", "name": "Item c again"}
        fourth = run(binary, config, tmp_path)
        assert fourth.returncode == 0, fourth.stderr[-3000:]
        result = project.build()
        assert result.returncode == 0, result.output
        assert deleted("stg_shop__items")["c"] == (False, None)
    finally:
        api.close()


def test_freshness_fails_on_a_stale_landing(project, landing_dir):
    stale = landing.Run(landing_dir, "demo", dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=60))
    for name, stream in landing.DEMO_STREAMS.items():
        stale.land(stream, [landing.product(1)] if name == "products" else [landing.customer(1, landing.iso(1))] if name == "customers" else [landing.order(1, landing.iso(1))])
    stale.commit()
    freshness = project.freshness()
    assert freshness.returncode == 1, freshness.output
    statuses = {r["unique_id"]: r["status"] for r in freshness.results}
    assert statuses["source.landfall.demo._manifests"] == "error", statuses  # 60h > error_after 50h
    assert statuses["source.landfall.demo.products"] == "error", statuses
