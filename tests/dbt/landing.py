"""Writes landed data exactly as `landfall run` does (docs/contract.md, sections 2-4).

Used where the real binary cannot produce the case under test (duplicated parts, a
manifest that miscounts, a null primary key) and as the data set of the fixture tests.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CONNECTOR_VERSION = "0.1.0"


def utc_text(moment: dt.datetime) -> str:
    """`2026-11-21T11:12:14.123456Z`, the envelope's timestamp format."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def uuid7(moment: dt.datetime) -> str:
    millis = int(moment.timestamp() * 1000)
    raw = bytearray(millis.to_bytes(6, "big") + secrets.token_bytes(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def raw_bytes(record: dict) -> str:
    """The record as an API would send it (compact JSON, key order kept)."""
    return json.dumps(record, separators=(",", ":"))


@dataclass
class Stream:
    name: str
    endpoint: str
    primary_key: list[str]
    cursor_field: str | None

    @property
    def sync_mode(self) -> str:
        return "incremental" if self.cursor_field else "full_refresh"

    def record_id(self, record: dict) -> str | None:
        values = [record.get(key) for key in self.primary_key]
        if not self.primary_key or any(value is None for value in values):
            return None
        if len(values) == 1:
            value = values[0]
            return value if isinstance(value, str) else json.dumps(value)
        return json.dumps(values, separators=(",", ":"))


DEMO_STREAMS = {
    "customers": Stream("customers", "GET /v1/customers", ["id"], "updated_at"),
    "orders": Stream("orders", "GET /v1/orders", ["id"], "updated_at"),
    "products": Stream("products", "GET /v1/products", ["sku"], None),
}


@dataclass
class Run:
    """One landfall run of one source: parts per stream, then the manifest."""

    root: Path
    source: str
    started_at: dt.datetime
    status: str = "succeeded"
    tenant: str | None = None
    environment: str | None = None
    run_id: str = ""
    streams: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_id = self.run_id or uuid7(self.started_at)

    @property
    def extracted_date(self) -> str:
        return self.started_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")

    def land(
        self,
        stream: Stream,
        records: list[dict],
        page_size: int = 100,
        part_max_records: int = 1000,
        raw_override: dict[int, str] | None = None,
    ) -> dict:
        """Lands `records` as pages of `page_size`, parts of `part_max_records` lines."""
        folder = f"{self.source}/{stream.name}/extracted_date={self.extracted_date}/run_id={self.run_id}"
        lines: list[str] = []
        for index, record in enumerate(records):
            page = index // page_size + 1
            extracted = self.started_at + dt.timedelta(milliseconds=10 * page)
            loaded = extracted + dt.timedelta(microseconds=index + 1)
            raw = (raw_override or {}).get(index) or raw_bytes(record)
            envelope = {
                "_source_system": self.source,
                "_source_object": stream.name,
                "_source_endpoint": stream.endpoint,
                "_source_record_id": stream.record_id(record),
                "_source_updated_at": record.get(stream.cursor_field) if stream.cursor_field else None,
                "_extracted_at": utc_text(extracted),
                "_loaded_at": utc_text(loaded),
                "_run_id": self.run_id,
                "_connector_version": CONNECTOR_VERSION,
                "_tenant": self.tenant,
                "_environment": self.environment,
                "_payload_sha256": hashlib.sha256(raw.encode()).hexdigest(),
                "_page": page,
                "_raw": raw,
            }
            lines.append(json.dumps(envelope, separators=(",", ":")))
        files = []
        for number, start in enumerate(range(0, len(lines), part_max_records)):
            chunk = lines[start : start + part_max_records]
            path = f"{folder}/part-{number:05d}.jsonl.gz"
            body = gzip.compress(("\n".join(chunk) + "\n").encode(), mtime=0)
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:  # create-only, like the real writer
                out.write(body)
            files.append(
                {"path": path, "rows": len(chunk), "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            )
        cursors = [record.get(stream.cursor_field) for record in records] if stream.cursor_field else []
        entry = {
            "name": stream.name,
            "sync_mode": stream.sync_mode,
            "cursor_start": None,
            "cursor_end": max(cursors) if cursors else None,
            "pages": -(-len(records) // page_size),
            "requests": -(-len(records) // page_size),
            "retries": 0,
            "rows_read": len(records),
            "rows_written": len(records),
            "duplicate_rows": 0,
            "dead_letter_rows": 0,
            "bytes_written": sum(f["bytes"] for f in files),
            "lag_seconds": 0.0,
            "status": "succeeded",
            "error": None,
            "files": files,
        }
        self.streams.append(entry)
        return entry

    def commit(self, finished_at: dt.datetime | None = None) -> Path:
        """Writes the manifest, the run's commit marker."""
        finished_at = finished_at or self.started_at + dt.timedelta(seconds=5)
        manifest = {
            "manifest_version": 1,
            "run_id": self.run_id,
            "source_system": self.source,
            "tenant": self.tenant,
            "environment": self.environment,
            "landing_url": self.root.as_uri(),
            "connector": {"name": "landfall", "version": CONNECTOR_VERSION},
            "config_sha256": hashlib.sha256(b"fixture").hexdigest(),
            "started_at": utc_text(self.started_at),
            "finished_at": utc_text(finished_at),
            "duration_seconds": (finished_at - self.started_at).total_seconds(),
            "status": self.status,
            "streams": self.streams,
        }
        path = self.root / self.source / "_manifests" / f"extracted_date={self.extracted_date}" / f"{self.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x") as out:
            out.write(json.dumps(manifest, separators=(",", ":")) + "\n")
        return path


# Demo-like records, shaped like the sample API's (config-examples/demo.yaml).

def customer(i: int, updated_at: str, name: str | None = None) -> dict:
    return {
        "id": i,
        "name": name or f"Customer {i}",
        "email": f"customer{i}@example.com",
        "country": ["DE", "FR", "US", "JP"][i % 4],
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": updated_at,
    }


def order(i: int, updated_at: str, status: str = "paid") -> dict:
    return {
        "id": f"ord_{i:06d}",
        "customer_id": i % 1000 + 1,
        "amount": round(10 + i * 0.25, 2),
        "currency": "EUR",
        "status": status,
        "updated_at": updated_at,
    }


def product(i: int, price: float | None = None) -> dict:
    return {"sku": f"SKU-{i:04d}", "title": f"Product {i}", "price": price or 1.5 * i, "active": i % 5 != 0}


def iso(day: int, second: int = 0) -> str:
    moment = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=day, seconds=second)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def land_demo_initial(root: Path, now: dt.datetime | None = None) -> dict:
    """Two committed runs and one crashed run; returns the expected latest state.

    run 1: full load. run 2: updates to some customers and orders, products re-read.
    crashed run: re-lands run 2's customer updates without a manifest (at-least-once).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    streams = DEMO_STREAMS
    state = {
        "customers": {i: customer(i, iso(1, i)) for i in range(1, 301)},
        "orders": {f"ord_{i:06d}": order(i, iso(1, i)) for i in range(1, 601)},
        "products": {f"SKU-{i:04d}": product(i) for i in range(1, 51)},
        "runs": [],
        "now": now,
    }

    run1 = Run(root, "demo", now - dt.timedelta(hours=3))
    run1.land(streams["customers"], list(state["customers"].values()))
    run1.land(streams["orders"], list(state["orders"].values()), part_max_records=250)
    run1.land(streams["products"], list(state["products"].values()))
    run1.commit()

    run2 = Run(root, "demo", now - dt.timedelta(hours=2))
    updated_customers = [customer(i, iso(2, i), name=f"Renamed {i}") for i in range(1, 21)]
    updated_orders = [order(i, iso(2, i), status="refunded") for i in range(1, 31)]
    state["products"]["SKU-0007"] = product(7, price=99.0)
    for record in updated_customers:
        state["customers"][record["id"]] = record
    for record in updated_orders:
        state["orders"][record["id"]] = record
    run2.land(streams["customers"], updated_customers)
    run2.land(streams["orders"], updated_orders)
    run2.land(streams["products"], list(state["products"].values()))
    run2.commit()

    crashed = Run(root, "demo", now - dt.timedelta(hours=1, minutes=30))
    crashed.land(streams["customers"], updated_customers)

    state["runs"] = [run1, run2]
    return state


def land_demo_late(root: Path, state: dict) -> dict:
    """run 3: a late, older version of customer 1 (must not win), new orders, products."""
    streams = DEMO_STREAMS
    run3 = Run(root, "demo", state["now"] - dt.timedelta(hours=1))
    late = customer(1, iso(0, 5), name="Stale 1")
    new_orders = [order(i, iso(3, i)) for i in range(601, 651)]
    for record in new_orders:
        state["orders"][record["id"]] = record
    run3.land(streams["customers"], [late])
    run3.land(streams["orders"], new_orders)
    run3.land(streams["products"], list(state["products"].values()))
    run3.commit()
    state["runs"].append(run3)
    return state


def upload_tree(root: Path, s3_client, bucket: str, prefix: str) -> int:
    """Copies every file under `root` to s3://bucket/prefix/... with the same relative keys."""
    count = 0
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            path = Path(dirpath) / filename
            key = f"{prefix}/{path.relative_to(root).as_posix()}" if prefix else path.relative_to(root).as_posix()
            s3_client.upload_file(str(path), bucket, key)
            count += 1
    return count
