"""Turns bench/database/run's measurements into a Markdown section appended to OUT.md.

Usage: python3 report.py MEASUREMENTS.tsv META.env OUT.md

Each TSV line: database, tool, round, wall s, client CPU s, server CPU s, client peak RSS KiB,
rows, output bytes, note (a line without figures is a tool that did not run, the note says
why). Several rounds of one tool are reduced to their medians.
"""

import statistics
import sys
from collections import defaultdict

HEADER = """# Database benchmark results

How to reproduce, and what each tool does: [`README.md`](README.md). Each section below is
appended by `bench/database/run` (newest last); nothing here is edited by hand except this
header.
"""

# Issue 18's targets for Landfall on 2 cores.
DLT_SQLALCHEMY_FACTOR = 10
DLT_PYARROW_FACTOR = 2
BOUND_FACTOR = 2
RSS_LIMIT_MB = 64

DB_NAMES = {"postgres": "PostgreSQL", "mysql": "MariaDB"}
TOOL_NAMES = {
    "bound": "bound: server-side JSON, client gzip -1",
    "Landfall": "Landfall",
    "dlt (pyarrow)": "dlt sql_database, pyarrow backend",
    "dlt (sqlalchemy)": "dlt sql_database, sqlalchemy backend",
}


def load(path):
    runs = defaultdict(list)
    order = []
    with open(path) as tsv:
        for line in tsv:
            db, tool, _round, wall, cpu, server, rss, rows, size, note = line.rstrip("\n").split("\t")
            key = (db, tool)
            if key not in runs:
                order.append(key)
            if wall:
                runs[key].append(
                    {
                        "wall": float(wall),
                        "cpu": float(cpu),
                        "server": float(server),
                        "rss_mb": int(rss) / 1024,
                        "rows": int(rows),
                        "bytes": int(size),
                        "note": note,
                    }
                )
            else:
                runs[key].append({"note": note})
    return order, runs


def med(runs, key):
    return statistics.median(run[key] for run in runs)


def main():
    tsv, meta_path, out = sys.argv[1:4]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_path) if "=" in line)
    order, runs = load(tsv)
    rows = int(meta["rows"])

    lines = [
        f"## {meta['date']}: {rows:,} rows",
        "",
        f"Machine: {meta['machine']}; load average (1, 5, 15 min) "
        + (
            f"before the runs: {meta['load_before']}, after: {meta['load_after']}."
            if "load_before" in meta
            else f"after the runs: {meta['load']}."
        ),
        "",
        "Versions: " + "; ".join(meta[k] for k in ("landfall", "postgres", "mysql", "dlt", "gzip") if k in meta) + ".",
        "",
        f"Each figure is the median of {meta['rounds']} run(s). CPU s and peak RSS are the client's "
        "(the process and its children, e.g. psql and gzip); server CPU s is what the database "
        "server spent meanwhile, read from /proc. Wall time grows with the machine's load; rows "
        "per CPU s much less.",
        "",
    ]
    rates = {}
    for db in DB_NAMES:
        keys = [key for key in order if key[0] == db]
        if not keys:
            continue
        lines += [
            f"### {DB_NAMES[db]}",
            "",
            "| tool | rows/s | wall s | CPU s | server CPU s | rows per CPU s (client + server) | peak RSS MB | output bytes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key in keys:
            measured = [run for run in runs[key] if "wall" in run]
            name = TOOL_NAMES.get(key[1], key[1])
            if not measured:
                lines.append(f"| {name} | {runs[key][0]['note']} | | | | | | |")
                continue
            wall = med(measured, "wall")
            rates[key] = rows / wall
            rss = med(measured, "rss_mb")
            rates[(db, key[1], "rss")] = rss
            cpu, server = med(measured, "cpu"), med(measured, "server")
            lines.append(
                f"| {name} | {rows / wall:,.0f} | {wall:.2f} | {cpu:.2f} | {server:.2f} | "
                f"{rows / max(cpu + server, 0.01):,.0f} | {rss:.1f} | {int(med(measured, 'bytes')):,} |"
            )
        lines.append("")
        landfall = rates.get((db, "Landfall"))
        if landfall is None:
            lines += ["Targets (issue 18) not evaluated: Landfall did not run.", ""]
            continue
        checks = []
        for tool, factor in (("dlt (sqlalchemy)", DLT_SQLALCHEMY_FACTOR), ("dlt (pyarrow)", DLT_PYARROW_FACTOR)):
            if (db, tool) in rates:
                ratio = landfall / rates[(db, tool)]
                checks.append((f"rows/s at least {factor}x {tool}", ratio >= factor, f"{ratio:.1f}x"))
        if (db, "bound") in rates:
            ratio = rates[(db, "bound")] / landfall
            checks.append((f"wall time within {BOUND_FACTOR}x the bound", ratio <= BOUND_FACTOR, f"{ratio:.2f}x"))
        rss = rates[(db, "Landfall", "rss")]
        checks.append((f"peak RSS under {RSS_LIMIT_MB} MB", rss < RSS_LIMIT_MB, f"{rss:.1f} MB"))
        lines += ["| target | met | measured |", "|---|---|---|"]
        lines += [f"| {name} | {'yes' if ok else '**no**'} | {value} |" for name, ok, value in checks]
        lines.append("")

    try:
        existing = open(out).read()
    except FileNotFoundError:
        existing = HEADER
    with open(out, "w") as f:
        f.write(existing.rstrip("\n") + "\n\n" + "\n".join(lines).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
