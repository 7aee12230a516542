"""Create the Airflow pools the landfall DAGs use, when they are missing.

Airflow leaves a task whose pool does not exist unscheduled, so each connector's pool
(`pool`, default `landfall_<source>`) and its dbt pool must exist before the first run.
This module creates the missing ones and never changes an existing pool: a pool an operator
resized keeps its size.

It writes to the metadata database, which DAG files may not do at parse time (Airflow 3's
DAG processor and workers have no database session; on Airflow 2 a write on every parse would
race between parsers). Run it where Airflow's own CLI runs, after `airflow db migrate`:

    python -m landfall_airflow.pools            # create missing pools, print what it did
    python -m landfall_airflow.pools --dry-run  # only print the pools the DAGs need

for example as a step of the Airflow Helm chart's migrate-database Job, an init container of
the scheduler, or a deploy pipeline step. The DAGs are found as the DAG file finds them
(see `discovery`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from landfall_airflow import discovery

# Default size of a created pool: how many tasks of one source may call its API at once.
DEFAULT_SLOTS = 2
DEFAULT_POOL = "default_pool"


@dataclass(frozen=True)
class PoolSpec:
    """A pool the DAGs need: its name, the size to create it with, and why it exists."""

    name: str
    slots: int
    description: str


def required_pools(connectors: Iterable[discovery.Connector], default_slots: int = DEFAULT_SLOTS) -> list[PoolSpec]:
    """The pools the connectors' tasks name, with a size that fits each task's `pool_slots`."""
    pools: dict[str, PoolSpec] = {}
    for item in connectors:
        settings, source = item.settings, item.config.source
        wanted = [(settings["pool"], int(settings["pool_slots"]))]
        if settings["dbt"]["pool"]:
            wanted.append((settings["dbt"]["pool"], 1))
        for name, task_slots in wanted:
            if name == DEFAULT_POOL:
                continue
            slots = max(default_slots, task_slots)
            previous = pools.get(name)
            if previous is not None:
                slots = max(slots, previous.slots)
                description = previous.description if source in previous.description else f"{previous.description}, {source}"
            else:
                description = f"landfall: {source}"
            pools[name] = PoolSpec(name=name, slots=slots, description=description)
    return sorted(pools.values(), key=lambda pool: pool.name)


def ensure_pools(pools: Iterable[PoolSpec], *, dry_run: bool = False) -> list[tuple[PoolSpec, str]]:
    """Creates the pools that do not exist; returns each pool with `created`, `exists` or
    `missing` (dry run)."""
    from airflow.models.pool import Pool

    outcome = []
    for pool in pools:
        if Pool.get_pool(pool.name) is not None:
            outcome.append((pool, "exists"))
        elif dry_run:
            outcome.append((pool, "missing"))
        else:
            _create(Pool, pool)
            outcome.append((pool, "created"))
    return outcome


def _create(pool_model: Any, pool: PoolSpec) -> None:
    kwargs: dict[str, Any] = {"name": pool.name, "slots": pool.slots, "description": pool.description}
    try:
        pool_model.create_or_update_pool(**kwargs, include_deferred=False)
    except TypeError:  # Airflow before 2.7 has no include_deferred
        pool_model.create_or_update_pool(**kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m landfall_airflow.pools", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the pools the DAGs need; create none")
    parser.add_argument("--slots", type=int, default=DEFAULT_SLOTS, help=f"size of a created pool (default {DEFAULT_SLOTS})")
    args = parser.parse_args(argv)
    if args.slots < 1:
        parser.error("--slots must be at least 1")
    connectors, errors = discovery.discover()
    for error in errors:
        print(f"skipped: {error}", file=sys.stderr)
    for pool, state in ensure_pools(required_pools(connectors, args.slots), dry_run=args.dry_run):
        print(f"{state}\t{pool.name}\t{pool.slots}\t{pool.description}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
