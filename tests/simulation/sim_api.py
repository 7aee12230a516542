"""A vendor-like API on loopback whose data evolves over simulated days.

The test owns the clock (`Vendor.now`) and the data: it applies each day's changes, then lets
landfall read. Records are visible once their update time has come (`updated_at <= now`).

    POST /oauth/token                      refresh_token grant; every refresh rotates the refresh
                                           token and revokes the old one (strict rotation)
    GET  /v1/customers                     incremental, RFC 3339 `updated_since`, cursor pages;
                                           soft deletes carry `deleted_at`
    GET  /v1/customers/{id}/addresses      child of customers (a change bumps the customer)
    GET  /v1/tickets                       incremental, Unix seconds `start_time`, numbered pages
    GET  /v1/deleted_tickets               hard-deleted tickets, Unix seconds `start_time`
    GET  /v1/products                      full refresh, offset pages; hard deletes disappear

Every request is logged (monotonic time, path, status) for the rate check. Faults: `fail_500_after`
(every data request after the Nth answers 500), `throttle_every` (every Nth data request answers 429 with
`Retry-After: 1`, unless it is a retry that waited that second out), `kill_after` (after N child requests, SIGKILL the landfall process
reading this API, found in /proc by its config path), `hidden_tickets` (a vendor bug: those
tickets are missing from /v1/tickets until fixed).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

CLIENT_ID = "landfall-sim"
CLIENT_SECRET = "sim-client-secret"
INITIAL_REFRESH_TOKEN = "sim-refresh-0"


def rfc3339(instant: dt.datetime) -> str:
    return instant.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Request:
    at: float
    path: str
    status: int


@dataclass
class Vendor:
    now: dt.datetime
    customers: dict[int, dict] = field(default_factory=dict)
    addresses: dict[int, list[dict]] = field(default_factory=dict)
    tickets: dict[int, dict] = field(default_factory=dict)
    deleted_tickets: list[dict] = field(default_factory=list)
    products: dict[str, dict] = field(default_factory=dict)
    # faults
    fail_500_after: int | None = None  # data requests answer 500 from this request number on
    throttle_every: int = 0
    throttled: dict[str, float] = field(default_factory=dict)  # path and query -> when it got a 429
    kill_after: int | None = None
    kill_config: str | None = None
    killed: list[int] = field(default_factory=list)
    hidden_tickets: set[int] = field(default_factory=set)
    # auth
    refresh_token: str = INITIAL_REFRESH_TOKEN
    access_tokens: set[str] = field(default_factory=set)
    rotations: int = 0
    refused_refreshes: int = 0
    race: threading.Barrier | None = None  # two refreshes meet here (see race_refreshes)
    race_arrivals: int = 0
    race_log: list[tuple[int, int]] = field(default_factory=list)
    # accounting
    log: list[Request] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    data_requests: int = 0
    child_requests: int = 0

    def race_refreshes(self) -> None:
        """The next two token refreshes meet: the first rotates the refresh token and gets
        its answer 0.5 s late, the second (holding the token just revoked) hears
        `invalid_grant` at once, as two processes refreshing the same saved token would."""
        self.race = threading.Barrier(2)
        self.race_arrivals = 0

    def race_turn(self) -> int | None:
        race = self.race
        if race is None:
            return None
        with self.lock:
            index = self.race_arrivals
            self.race_arrivals += 1
            if index >= 1:
                self.race = None
        try:
            race.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        if index == 1:
            time.sleep(0.1)  # the first one rotates first
        return index

    def refresh(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
                self.refused_refreshes += 1
                return 400, {"error": "invalid_grant"}
            self.rotations += 1
            self.refresh_token = f"sim-refresh-{self.rotations}-{secrets.token_hex(4)}"
            access = f"sim-access-{secrets.token_hex(8)}"
            self.access_tokens.add(access)
            return 200, {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": self.refresh_token,
            }

    # -- the truth -------------------------------------------------------------------------

    def visible(self, record: dict, field_name: str = "updated_at") -> bool:
        value = record[field_name]
        instant = dt.datetime.fromtimestamp(value, dt.timezone.utc) if isinstance(value, int) else parse_rfc3339(value)
        return instant <= self.now

    # -- HTTP ------------------------------------------------------------------------------

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                url = urlparse(self.path)
                if url.path != "/oauth/token":
                    return self.send(404, {"error": "not found"}, url.path)
                form = {key: values[0] for key, values in parse_qs(body).items()}
                client_id, client_secret = form.get("client_id"), form.get("client_secret")
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
                if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                    return self.send(401, {"error": "invalid_client"}, url.path)
                index = vendor.race_turn()
                status, document = vendor.refresh(form)
                if index is not None:
                    vendor.race_log.append((index, status))
                    if index == 0:
                        time.sleep(0.5)  # the winner's answer is slow: the loser hears first
                return self.send(status, document, url.path)

            def do_GET(self):
                url = urlparse(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token not in vendor.access_tokens:
                    return self.send(401, {"error": "invalid_token"}, url.path)
                with vendor.lock:
                    vendor.data_requests += 1
                    number = vendor.data_requests
                    if vendor.fail_500_after is not None and number > vendor.fail_500_after:
                        return self.send(500, {"error": "internal"}, url.path)
                    # A request that waited out its Retry-After is served, as a vendor's rate
                    # window would let it through: a plain counter could throttle the same
                    # request on every retry when the other streams' requests line up.
                    waited = vendor.throttled.pop(self.path, None)
                    if (
                        vendor.throttle_every
                        and number % vendor.throttle_every == 0
                        and (waited is None or time.monotonic() - waited < 1.0)
                    ):
                        vendor.throttled[self.path] = time.monotonic()
                        return self.send(429, {"error": "slow down"}, url.path, {"Retry-After": "1"})
                    try:
                        status, document = vendor.route(url.path, query)
                    except (KeyError, ValueError) as error:
                        status, document = 400, {"error": str(error)}
                    kill = (
                        vendor.kill_after is not None
                        and url.path.endswith("/addresses")
                        and vendor.child_requests >= vendor.kill_after
                    )
                if kill:
                    vendor.kill_reader()
                return self.send(status, document, url.path)

            def send(self, status, document, path, headers=None):
                with vendor.lock:
                    vendor.log.append(Request(time.monotonic(), path, status))
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    def route(self, path: str, query: dict[str, str]) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if path == "/v1/customers":
            since = parse_rfc3339(query["updated_since"])
            rows = sorted(
                (c for c in self.customers.values() if self.visible(c) and parse_rfc3339(c["updated_at"]) >= since),
                key=lambda c: (c["updated_at"], c["id"]),
            )
            offset, limit = int(query.get("cursor") or 0), int(query.get("limit") or 25)
            page = rows[offset : offset + limit]
            following = offset + limit if offset + limit < len(rows) else None
            return 200, {"data": page, "meta": {"next_cursor": None if following is None else str(following)}}
        if len(parts) == 4 and parts[:2] == ["v1", "customers"] and parts[3] == "addresses":
            self.child_requests += 1
            return 200, {"data": self.addresses.get(int(parts[2]), [])}
        if path == "/v1/tickets":
            since = int(query["start_time"])
            rows = sorted(
                (
                    t
                    for t in self.tickets.values()
                    if self.visible(t) and t["updated_at"] >= since and t["id"] not in self.hidden_tickets
                ),
                key=lambda t: (t["updated_at"], t["id"]),
            )
            page, per_page = int(query.get("page") or 1), int(query["per_page"])
            return 200, {"tickets": rows[(page - 1) * per_page : page * per_page]}
        if path == "/v1/deleted_tickets":
            since = int(query["start_time"])
            rows = [d for d in self.deleted_tickets if self.visible(d, "deleted_at") and d["deleted_at"] >= since]
            return 200, {"deleted_tickets": rows}
        if path == "/v1/products":
            rows = [self.products[sku] for sku in sorted(self.products)]
            offset, limit = int(query.get("offset") or 0), int(query["limit"])
            return 200, {"items": rows[offset : offset + limit], "total": len(rows)}
        return 404, {"error": f"no route {path}"}

    def kill_reader(self) -> None:
        """SIGKILL the `landfall run` reading this API (its command line names our config)."""
        self.kill_after = None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            args = [arg.decode(errors="replace") for arg in argv]
            if "run" in args and self.kill_config in args and any(arg.endswith("landfall") for arg in args[:1]):
                os.kill(int(entry.name), signal.SIGKILL)
                self.killed.append(int(entry.name))
