"""The proof (issue 16): a simulated month of a vendor API through the shipped DAG factory.

Real Airflow 3 (`airflow dags test`, one per logical date, local mode), the real landfall
binary, real dbt-duckdb over the landing. The vendor (sim_api.py) changes every day:
inserts, updates, late updates backdated within `lookback`, soft deletes, hard deletes (a
full-refresh stream and a deletes endpoint), a Unix-seconds stream, a parent-child pair,
OAuth 2.0 with strictly rotating refresh tokens. The month has a day of 500s (the task fails;
the next day catches up), a day of 429s with Retry-After, a SIGKILL of landfall mid-run, a
five-day pause (catchup off), two processes racing a token rotation, and a backfill of a
past window after the vendor fixed a bug that hid records.

It passes when staging equals the vendor's truth exactly, the request log never exceeds
the configured rate, every succeeded manifest reconciles with the rows landed, and no
checkpoint ever moved backwards. It prints a summary.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import DBT_BIN_DIR, ROOT, airflow_cli
from sim_api import CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH_TOKEN, Vendor, parse_rfc3339, rfc3339

DAG_ID = "landfall_sim"
SOURCE = "sim"
FIRST_DAY = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
DAYS = 30
RATE = 20.0  # requests per second, the source's budget
BURST = 5
LOOKBACK_HOURS = 6

FAIL_500_DAY = 5
THROTTLE_DAY = 8
KILL_DAY = 11
DBT_DAYS = (13, 30)  # the DAG's dbt step runs on these days (incremental staging in between)
PAUSED_DAYS = range(15, 20)  # unpaused on day 20, catchup off: no runs for 15..19
BUGGED_DAYS = (22, 23)  # tickets created these days are hidden by a vendor bug ...
FIX_DAY = 26  # ... fixed on this day; a backfill of the bugged window follows the day's run
RACE_DAY = 28  # two processes race a token rotation before the day's run

CONFIG = """\
# The simulated vendor (tests/simulation/sim_api.py).
version: 1
source:
  name: sim
  base_url: ${{env:SIM_API_URL}}
  allow_insecure_http: true
  auth:
    type: oauth2
    flow: refresh_token
    token_url: ${{env:SIM_API_URL}}/oauth/token
    client_id: {client_id}
    client_secret: ${{env:SIM_CLIENT_SECRET}}
    refresh_token: ${{env:SIM_REFRESH_TOKEN}}
  timeout: 10s
  retry: {{max_attempts: 3, initial_delay: 100ms, max_delay: 2s}}
  rate_limit: {{requests_per_second: {rate}, burst: {burst}, concurrency: 4}}
streams:
  - name: customers
    path: /v1/customers
    params: {{limit: 25}}
    records_path: /data
    primary_key: [id]
    pagination: {{type: cursor, cursor_path: /meta/next_cursor, cursor_param: cursor}}
    incremental: {{cursor_field: updated_at, param: updated_since, start: "2024-01-01T00:00:00Z", lookback: {lookback}h}}
    columns: {{id: integer, name: string, tier: string, updated_at: timestamp, deleted_at: timestamp}}
    delete_marker: {{field: deleted_at}}
  - name: addresses
    path: /v1/customers/{{parent.id}}/addresses
    records_path: /data
    primary_key: [id]
    parent: {{stream: customers, fields: [id]}}
    columns: {{id: integer, customer_id: integer, city: string}}
  - name: tickets
    path: /v1/tickets
    params: {{per_page: 20}}
    records_path: /tickets
    primary_key: [id]
    pagination: {{type: page_number, page_param: page}}
    incremental: {{cursor_field: updated_at, param: start_time, start: "2024-01-01T00:00:00Z", format: unix_seconds, lookback: {lookback}h}}
    columns: {{id: integer, subject: string, status: string, updated_at: integer}}
    deletes:
      path: /v1/deleted_tickets
      records_path: /deleted_tickets
      key: [id]
      incremental: {{cursor_field: deleted_at, param: start_time, start: "2024-01-01T00:00:00Z", format: unix_seconds, lookback: {lookback}h}}
  - name: products
    path: /v1/products
    records_path: /items
    primary_key: [sku]
    pagination: {{type: offset, offset_param: offset, limit_param: limit, limit: 20, total_path: /total}}
    columns: {{sku: string, title: string, price: number}}
landing:
  url: ${{env:LANDFALL_LANDING_URL}}
"""

SIDECAR = """\
dag_id: landfall_sim
schedule: "@daily"
start_date: 2024-02-01
catchup: false
retries: 0
dbt: {{enabled: {dbt}}}
"""


# -- the vendor's data, evolving ----------------------------------------------------------


@dataclass
class World:
    vendor: Vendor
    rng: random.Random = field(default_factory=lambda: random.Random(16))
    next_customer: int = 1
    next_address: int = 1
    next_ticket: int = 1
    next_product: int = 1
    bugged: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("inserts", "updates", "late_updates", "soft_deletes", "hard_deletes_full_refresh", "hard_deletes_endpoint"), 0
    ))  # fmt: skip

    def at(self, day: int, hour: float) -> dt.datetime:
        return FIRST_DAY + dt.timedelta(days=day - 1, hours=hour)

    def times(self, day: int, n: int) -> list[dt.datetime]:
        return sorted(self.at(day, self.rng.uniform(0.0, 23.0)) for _ in range(n))

    def add_customer(self, when: dt.datetime) -> None:
        cid = self.next_customer
        self.next_customer += 1
        self.vendor.customers[cid] = {
            "id": cid, "name": f"Customer {cid}", "tier": "free", "updated_at": rfc3339(when), "deleted_at": None,
        }  # fmt: skip
        self.vendor.addresses[cid] = []
        self.add_address(cid, when)
        self.counts["inserts"] += 1

    def add_address(self, cid: int, when: dt.datetime) -> None:
        aid = self.next_address
        self.next_address += 1
        self.vendor.addresses[cid].append({"id": aid, "customer_id": cid, "city": f"City {aid}"})
        self.vendor.customers[cid]["updated_at"] = rfc3339(when)  # the vendor bumps the parent

    def live_customers(self) -> list[dict]:
        return [c for c in self.vendor.customers.values() if c["deleted_at"] is None]

    def add_ticket(self, when: dt.datetime, day: int) -> None:
        tid = self.next_ticket
        self.next_ticket += 1
        self.vendor.tickets[tid] = {"id": tid, "subject": f"Ticket {tid}", "status": "new", "updated_at": int(when.timestamp())}
        if day in BUGGED_DAYS:
            self.bugged.add(tid)
            self.vendor.hidden_tickets.add(tid)
        self.counts["inserts"] += 1

    def add_product(self) -> None:
        sku = f"SKU-{self.next_product:04d}"
        self.next_product += 1
        self.vendor.products[sku] = {"sku": sku, "title": f"Product {sku}", "price": 10.0}
        self.counts["inserts"] += 1

    def seed(self) -> None:
        """What exists before the first run: 60 customers, 50 tickets, 45 products."""
        for when in self.times(0, 60):
            self.add_customer(when)
        for when in self.times(0, 50):
            self.add_ticket(when, 0)
        for _ in range(45):
            self.add_product()

    def change(self, day: int) -> None:
        """One day of changes, all timed inside the day (the late update behind it)."""
        rng, vendor = self.rng, self.vendor
        times = iter(self.times(day, 40))
        for _ in range(3):
            self.add_customer(next(times))
        for customer in rng.sample(self.live_customers(), 4):
            customer["tier"] = rng.choice(["free", "pro", "enterprise"]) + f"-{day}"
            customer["updated_at"] = rfc3339(next(times))
            self.counts["updates"] += 1
        # one update at 23:30 so the checkpoint sits late in the day, before tomorrow's late update
        customer = rng.choice(self.live_customers())
        customer["tier"] = f"late-evening-{day}"
        customer["updated_at"] = rfc3339(self.at(day, 23.5))
        self.counts["updates"] += 1
        cid = rng.choice(self.live_customers())["id"]
        self.add_address(cid, next(times))
        if day >= 2:
            # a late update: written today, stamped 2 h before today began (behind yesterday's
            # checkpoint, within the 6 h lookback)
            stamp = self.at(day, -2)
            older = [c for c in self.live_customers() if parse_rfc3339(c["updated_at"]) < stamp]
            customer = rng.choice(older)
            customer["tier"] = f"backdated-{day}"
            customer["updated_at"] = rfc3339(stamp)
            self.counts["late_updates"] += 1
            # a soft delete
            customer = rng.choice(self.live_customers())
            when = rfc3339(next(times))
            customer["deleted_at"] = when
            customer["updated_at"] = when
            self.counts["soft_deletes"] += 1
        for _ in range(4):
            self.add_ticket(next(times), day)
        updatable = [t for t in vendor.tickets.values() if t["id"] not in self.bugged]
        for ticket in rng.sample(updatable, 3):
            ticket["status"] = rng.choice(["open", "pending", "solved"])
            ticket["updated_at"] = max(ticket["updated_at"] + 1, int(next(times).timestamp()))
            self.counts["updates"] += 1
        if day >= 2:
            ticket = rng.choice([t for t in vendor.tickets.values() if t["id"] not in self.bugged])
            del vendor.tickets[ticket["id"]]
            vendor.deleted_tickets.append({"id": ticket["id"], "deleted_at": int(next(times).timestamp())})
            self.counts["hard_deletes_endpoint"] += 1
            del vendor.products[rng.choice(sorted(vendor.products))]
            self.counts["hard_deletes_full_refresh"] += 1
        self.add_product()
        for sku in rng.sample(sorted(vendor.products), 2):
            vendor.products[sku]["price"] = round(vendor.products[sku]["price"] + rng.uniform(0.5, 5.0), 2)
            self.counts["updates"] += 1


# -- reading the landing --------------------------------------------------------------------


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def manifests(landing: Path) -> list[dict]:
    found = [json.loads(path.read_text()) for path in (landing / SOURCE / "_manifests").rglob("*.json")]
    return sorted(found, key=lambda m: m["started_at"])


def checkpoints(landing: Path) -> dict[str, float]:
    """Each stream's checkpoint as a number (Unix seconds), read from _state/."""
    found = {}
    for path in (landing / SOURCE / "_state").glob("*.json"):
        name = path.name.removesuffix(".json")
        if name.startswith("_") or "." in name:
            continue
        document = json.loads(path.read_text())
        cursor = document.get("cursor")
        if cursor is None:
            continue
        found[name] = float(cursor) if str(cursor).isdigit() else parse_rfc3339(cursor).timestamp()
    return found


# -- the month --------------------------------------------------------------------------------


@dataclass
class Month:
    tmp: Path
    binary: Path
    vendor: Vendor
    url: str
    runs: int = 0
    failed_runs: list[int] = field(default_factory=list)
    checkpoint_history: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    seen_products: set[str] = field(default_factory=set)
    seen_tickets: set[int] = field(default_factory=set)
    base_path: str = field(default_factory=lambda: os.environ["PATH"])
    racers: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def landing(self) -> Path:
        return self.tmp / "landing"

    @property
    def configs(self) -> Path:
        return self.tmp / "configs"

    def env(self) -> dict[str, str]:
        return {
            "LANDFALL_AIRFLOW_MODE": "local",
            "LANDFALL_CONFIG_DIR": str(self.configs),
            "LANDFALL_BIN": str(self.binary),
            "LANDFALL_WORKDIR": str(self.tmp / "work"),
            "LANDFALL_LANDING_URL": self.landing.as_uri(),
            "LANDFALL_LOG_FORMAT": "json",
            "SIM_API_URL": self.url,
            "SIM_CLIENT_SECRET": CLIENT_SECRET,
            "SIM_REFRESH_TOKEN": INITIAL_REFRESH_TOKEN,
            "PATH": f"{DBT_BIN_DIR}{os.pathsep}{self.base_path}",
            "LANDFALL_DBT_PROJECT_DIR": str(self.tmp / "dbt"),
            "LANDFALL_DUCKDB_PATH": str(self.tmp / "dbt" / "sim.duckdb"),
            "DBT_TARGET_PATH": str(self.tmp / "dbt" / "target"),
            "DBT_LOG_PATH": str(self.tmp / "dbt" / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }

    def write_config(self, dbt: bool) -> None:
        self.configs.mkdir(exist_ok=True)
        (self.configs / "sim.yaml").write_text(
            CONFIG.format(client_id=CLIENT_ID, rate=RATE, burst=BURST, lookback=LOOKBACK_HOURS)
        )
        (self.configs / "sim.airflow.yaml").write_text(SIDECAR.format(dbt="true" if dbt else "false"))

    def record_checkpoints(self, label: str) -> None:
        """Read _state/ after every run; test_no_checkpoint_moved_backwards checks the history."""
        self.checkpoint_history.append((label, checkpoints(self.landing)))

    def dag_run(self, logical_date: dt.datetime, label: str, conf: dict | None = None, dbt: bool = False) -> bool:
        """One `dag.test()` of the DAG the shipped factory builds from the config folder (parsed
        again each time, as the DAG processor would after a change of the sidecar)."""
        from airflow.dag_processing.dagbag import DagBag

        self.write_config(dbt)
        os.environ.update(self.env())
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.dags[DAG_ID]
        assert {task.task_id for task in dag.tasks} == {"check", "extract", *(["dbt_build"] if dbt else [])}
        run = dag.test(logical_date=logical_date, run_conf=conf)
        self.runs += 1
        ok = str(getattr(run.state, "value", run.state)) == "success"
        if ok:
            self.seen_products.update(self.vendor.products)
            self.seen_tickets.update(t for t in self.vendor.tickets if t not in self.vendor.hidden_tickets)
        self.record_checkpoints(label)
        return ok

    def run_direct(self, streams: list[str], rate: float) -> subprocess.Popen:
        """`landfall run` of some streams as its own process, with `rate` of the budget."""
        config = self.tmp / f"race-{'-'.join(streams)}.yaml"
        config.write_text(CONFIG.format(client_id=CLIENT_ID, rate=rate, burst=max(1, BURST // 2), lookback=LOOKBACK_HOURS))
        args = [str(self.binary), "run", "--config", str(config)]
        for stream in streams:
            args += ["--stream", stream]
        return subprocess.Popen(
            args, cwd=self.tmp / "work", env={**os.environ, **self.env()}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def expire_dead_leases(self) -> list[str]:
        """The killed run's leases: a day passes in the simulation but seconds on the wall
        clock, so the 5-minute lease of the dead process would still hold. Age it as a day
        would (the next daily run finds it expired)."""
        aged = []
        for path in (self.landing / SOURCE / "_state").glob("*.lock"):
            document = json.loads(path.read_text())
            document["expires_at"] = "2000-01-01T00:00:00.000000Z"
            path.write_text(json.dumps(document))
            aged.append(path.name)
        return aged


def staged(database: Path, model: str) -> list[dict]:
    """The rows of a staging model, read with duckdb from the dbt venv (not in Airflow's)."""
    script = (
        "import duckdb, json, sys\n"
        "with duckdb.connect(sys.argv[1], read_only=True) as conn:\n"
        "    relation = conn.sql('select * from ' + sys.argv[2])\n"
        "    rows = [dict(zip(relation.columns, row)) for row in relation.fetchall()]\n"
        "print(json.dumps(rows, default=lambda value: value.isoformat() if hasattr(value, 'isoformat') else str(value)))\n"
    )
    result = subprocess.run(
        [str(DBT_BIN_DIR / "python"), "-c", script, str(database), model], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def as_instant(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    instant = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.timezone.utc)


def max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class Result:
    month: Month
    world: World
    outcomes: dict[str, bool]
    seconds: float

    @property
    def database(self) -> Path:
        return self.month.tmp / "dbt" / "sim.duckdb"


@pytest.fixture(scope="module")
def simulated(airflow_db, landfall_bin, tmp_path_factory) -> Result:
    """The month, run once; the tests below check what it left."""
    tmp_path = tmp_path_factory.mktemp("month")
    started = time.monotonic()
    binary = tmp_path / "landfall"
    shutil.copy2(landfall_bin, binary)
    (tmp_path / "work").mkdir()
    vendor = Vendor(now=FIRST_DAY)
    server, url = vendor.serve()
    world = World(vendor)
    world.seed()
    month = Month(tmp_path, binary, vendor, url)
    vendor.kill_config = str(month.configs / "sim.yaml")

    # dbt: a copy of the repo's project with this source's generated sources and staging
    project = tmp_path / "dbt"
    shutil.copytree(ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    month.write_config(dbt=False)
    generated = subprocess.run(
        [str(binary), "dbt-sources", "--config", str(month.configs / "sim.yaml"), "--out",
         str(project / "models" / "sources"), "--staging", str(project / "models" / "staging" / SOURCE)],
        env={**os.environ, **month.env()}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    pool = airflow_cli("pools", "set", "landfall_sim", "1", "landfall: sim API", env=month.env())
    assert pool.returncode == 0, pool.stderr

    outcomes: dict[str, bool] = {}
    try:
        for day in range(1, DAYS + 1):
            world.change(day)
            vendor.now = world.at(day + 1, 0)  # the run for day d happens at the end of day d
            if day in PAUSED_DAYS:
                continue
            # the 500s start once the check task has passed, a few pages into the extraction
            vendor.fail_500_after = vendor.data_requests + 12 if day == FAIL_500_DAY else None
            vendor.throttle_every = 4 if day == THROTTLE_DAY else 0
            if day == KILL_DAY:
                vendor.kill_after = 3 + vendor.child_requests  # SIGKILL at the 4th child request
            if day == RACE_DAY:
                # two processes (as two per-stream tasks would), each with half the budget,
                # both starting with a refresh of the same saved refresh token
                vendor.race_refreshes()
                racers = [month.run_direct(["products"], RATE / 2), month.run_direct(["tickets"], RATE / 2)]
                for racer in racers:
                    _, stderr = racer.communicate(timeout=300)
                    month.racers[racer.args[-1]] = (racer.returncode, stderr[-3000:])
                month.record_checkpoints("race")
            outcomes[f"day {day}"] = month.dag_run(world.at(day + 1, 0), f"day-{day:02d}", dbt=day in DBT_DAYS)
            vendor.fail_500_after = None
            vendor.throttle_every = 0
            if day == KILL_DAY:
                assert vendor.killed, "the SIGKILL never happened"
                assert month.expire_dead_leases(), "the killed run held no lease"
            if day == FIX_DAY:
                missing = set(world.bugged)
                landed = {r["id"] for p in (month.landing / SOURCE / "tickets").rglob("*.jsonl.gz") for r in map(lambda e: json.loads(e["_raw"]), read_jsonl_gz(p))}  # noqa: E501
                assert missing and not missing & landed, "the hidden tickets must be missing before the fix"
                vendor.hidden_tickets.clear()
                window = {"start": rfc3339(world.at(BUGGED_DAYS[0], 0)), "end": rfc3339(world.at(BUGGED_DAYS[-1] + 1, 0))}
                outcomes["backfill"] = month.dag_run(world.at(day + 1, 12), "backfill", conf=window)
                month.seen_tickets.update(world.bugged & set(vendor.tickets))
    finally:
        server.shutdown()
        server.server_close()

    return Result(month, world, outcomes, time.monotonic() - started)


def test_the_month_ran_as_scripted(simulated):
    """Only the day of 500s and the day of the SIGKILL failed; every other day, the backfill
    and both racers succeeded."""
    failed = {name for name, ok in simulated.outcomes.items() if not ok}
    assert failed == {f"day {FAIL_500_DAY}", f"day {KILL_DAY}"}, simulated.outcomes
    assert simulated.month.vendor.killed, "the SIGKILL never happened"
    assert len(simulated.outcomes) == DAYS - len(PAUSED_DAYS) + 1


def test_two_processes_racing_a_token_rotation_both_succeed(simulated):
    """Both started from the same saved refresh token; the vendor rotated it for the first
    and refused the second (`invalid_grant`) before the first had saved the new one."""
    vendor = simulated.month.vendor
    assert sorted(vendor.race_log) == [(0, 200), (1, 400)], vendor.race_log
    for stream, (code, stderr) in simulated.month.racers.items():
        assert code == 0, f"racer {stream} exited {code}: {stderr}"


def test_customers_equal_the_vendors_truth(simulated):
    """Incremental (RFC 3339) with late updates behind the checkpoint and soft deletes."""
    vendor = simulated.month.vendor
    rows = staged(simulated.database, "stg_sim__customers")
    customers = {row["id"]: row for row in rows}
    assert len(customers) == len(rows), "a key twice"
    assert set(customers) == set(vendor.customers), "customers missing or extra"
    for cid, truth in vendor.customers.items():
        row = customers[cid]
        assert (row["tier"], as_instant(row["updated_at"])) == (truth["tier"], parse_rfc3339(truth["updated_at"])), cid
        assert row["is_deleted"] == (truth["deleted_at"] is not None), cid
        assert as_instant(row["deleted_at"]) == (truth["deleted_at"] and parse_rfc3339(truth["deleted_at"])), cid


def test_no_child_of_an_incremental_parent_is_marked_deleted(simulated):
    """Fixed in this branch: `dbt-sources --staging` wrote snapshot_deletes=true for a child
    of an incremental parent, and every address whose customer was not re-read in the latest
    run became is_deleted."""
    rows = staged(simulated.database, "stg_sim__addresses")
    assert len({row["id"] for row in rows}) == len(rows), "an address twice"
    assert [row["id"] for row in rows if row["is_deleted"]] == []


def test_addresses_equal_the_vendors_truth(simulated):
    """Child stream: every address of every customer, none missing, although day 5 (500s
    while reading addresses) and day 11 (SIGKILL while reading addresses) failed after the
    customers had landed: the customers' checkpoint waits for the addresses."""
    vendor = simulated.month.vendor
    rows = staged(simulated.database, "stg_sim__addresses")
    truth = {a["id"] for addresses in vendor.addresses.values() for a in addresses}
    missing = truth - {row["id"] for row in rows}
    assert not missing, f"addresses never landed: {sorted(missing)}"
    assert {row["id"] for row in rows} == truth


def test_tickets_equal_the_vendors_truth(simulated):
    """Unix-seconds stream with a deletes endpoint, and tickets a vendor bug hid, backfilled."""
    month, world = simulated.month, simulated.world
    vendor = month.vendor
    rows = staged(simulated.database, "stg_sim__tickets")
    tickets = {row["id"]: row for row in rows}
    assert len(tickets) == len(rows), "a ticket twice"
    assert world.bugged and world.bugged <= set(tickets), "the backfill did not land the hidden tickets"
    for tid, truth in vendor.tickets.items():
        assert tid in tickets, f"live ticket {tid} missing"
        row = tickets[tid]
        assert (row["status"], row["updated_at"], row["is_deleted"]) == (truth["status"], truth["updated_at"], False), tid
    for gone in vendor.deleted_tickets:
        if gone["id"] in tickets:
            row = tickets[gone["id"]]
            assert row["is_deleted"], gone
            assert as_instant(row["deleted_at"]) == dt.datetime.fromtimestamp(gone["deleted_at"], dt.timezone.utc), gone
        else:
            assert gone["id"] not in month.seen_tickets, f"deleted ticket {gone['id']} was visible yet never landed"
    assert set(tickets) <= set(vendor.tickets) | {g["id"] for g in vendor.deleted_tickets}


def test_products_equal_the_vendors_truth(simulated):
    """Full refresh with hard deletes: a key absent from a later complete snapshot is deleted."""
    month = simulated.month
    vendor = month.vendor
    rows = staged(simulated.database, "stg_sim__products")
    products = {row["sku"]: row for row in rows}
    assert len(products) == len(rows), "a product twice"
    for sku, truth in vendor.products.items():
        assert sku in products, sku
        assert (float(products[sku]["price"]), products[sku]["is_deleted"]) == (truth["price"], False), sku
    for sku in month.seen_products - set(vendor.products):
        assert sku in products and products[sku]["is_deleted"], f"hard-deleted product {sku} not marked deleted"
    assert set(products) <= month.seen_products


def test_dbt_source_freshness_passed_in_the_dags_dbt_step(simulated):
    freshness = json.loads((simulated.month.tmp / "dbt" / "target" / "sources.json").read_text())
    assert {r["unique_id"].rsplit(".", 1)[-1] for r in freshness["results"]} >= {"customers", "tickets", "_manifests"}
    assert {r["status"] for r in freshness["results"]} == {"pass"}, freshness["results"]


def test_the_configured_rate_was_never_exceeded(simulated):
    """Across every task and process of the month (the racers had half the budget each)."""
    data_requests = [r.at for r in simulated.month.vendor.log if r.path != "/oauth/token"]
    busiest = max_in_window(data_requests, 1.0)
    assert busiest <= RATE + BURST, f"{busiest} requests in one second (budget {RATE}/s, burst {BURST})"


def test_no_checkpoint_moved_backwards(simulated):
    history = simulated.month.checkpoint_history
    assert history and set(history[-1][1]) >= {"customers", "tickets", "tickets__deletes"}, history[-1]
    for (_, before), (label, after) in zip(history, history[1:]):
        for stream, cursor in before.items():
            assert stream in after, f"{label}: checkpoint of {stream} disappeared"
            assert after[stream] >= cursor, f"{label}: checkpoint of {stream} moved backwards"


def test_manifests_reconcile_with_landed_rows_and_summary(simulated):
    month, world = simulated.month, simulated.world
    vendor = month.vendor
    runs = manifests(month.landing)
    pages = rows = duplicates = retries = 0
    for manifest in runs:
        for stream in manifest["streams"]:
            pages += stream["pages"]
            retries += stream["retries"]
            duplicates += stream.get("duplicate_rows", 0)
            rows += stream["rows_written"]
            if manifest["status"] == "succeeded":
                assert sum(part["rows"] for part in stream["files"]) == stream["rows_written"]
                for part in stream["files"]:
                    assert len(read_jsonl_gz(month.landing / part["path"])) == part["rows"], part["path"]
    landed_runs = {p.name.removeprefix("run_id=") for p in (month.landing / SOURCE).glob("*/*/run_id=*")}
    committed = {m["run_id"] for m in runs}
    # only the SIGKILLed run left parts without a manifest
    assert len(landed_runs - committed) == 1, landed_runs - committed
    landed = {
        name: sum(len(read_jsonl_gz(p)) for p in (month.landing / SOURCE / name).rglob("*.jsonl.gz"))
        for name in ("customers", "addresses", "tickets", "products")
    }
    kept = {name: len(staged(simulated.database, f"stg_sim__{name}")) for name in landed}
    statuses: dict[int, int] = {}
    for request in vendor.log:
        statuses[request.status] = statuses.get(request.status, 0) + 1
    summary = {
        "days": DAYS,
        "dag_runs": month.runs,
        "direct_runs": 2,
        "manifests": len(runs),
        "pages": pages,
        "requests": len(vendor.log),
        "rows_landed": sum(landed.values()),
        "rows_landed_by_stream": landed,
        "rows_in_staging": sum(kept.values()),
        "rows_in_staging_by_stream": kept,
        "rows_re_read_and_absorbed": sum(landed.values()) - sum(kept.values()),
        "duplicate_rows_in_manifests": duplicates,
        "changes": world.counts,
        "retries_in_manifests": retries,
        "responses_by_status": statuses,
        "token_rotations": vendor.rotations,
        "refused_refreshes": vendor.refused_refreshes,
        "busiest_second": max_in_window([r.at for r in vendor.log if r.path != "/oauth/token"], 1.0),
        "seconds": round(simulated.seconds, 1),
    }
    text = json.dumps(summary, indent=2)
    print("\nsimulated month:", text)
    report = os.environ.get("LANDFALL_SIMULATION_SUMMARY")
    if report:
        Path(report).write_text(text + "\n")
