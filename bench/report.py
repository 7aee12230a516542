"""Turns bench/run's measurements into the Markdown report.

Usage: python3 report.py MEASUREMENTS.tsv META.env OUT.md

The generated part goes between `<!-- bench:begin -->` and `<!-- bench:end -->` in OUT.md;
anything outside the markers (the profile and its analysis) is kept as it is.
"""

import statistics
import sys
from collections import defaultdict

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

RSS_LIMIT_MIB = 40
FLAT_LIMIT = 0.10
DLT_FACTOR = 25
BOUND_FACTOR = 2


def load(tsv_path):
    rows = defaultdict(list)
    with open(tsv_path) as tsv:
        for line in tsv:
            label, count, round_, wall, cpu, rss, extra = line.rstrip("\n").split("\t")
            rows[(label, int(count))].append(
                {
                    "round": int(round_),
                    "wall": float(wall),
                    "cpu": float(cpu),
                    "rss": int(rss) / 1024,
                    "extra": extra.strip(),
                    "notes": dict(item.split("=", 1) for item in extra.split() if "=" in item),
                }
            )
    return rows


def median(runs, key):
    return statistics.median(run[key] for run in runs)


def landed_mib(runs):
    sizes = [int(run["notes"]["gzip_bytes"]) for run in runs if "gzip_bytes" in run["notes"]]
    return f"{statistics.median(sizes) / 1048576:.1f}" if sizes else ""


def fmt_rate(value):
    return f"{value:,.0f}"


def peer_base(rows, label, count):
    """The count to compare `label` at for Landfall's `count`: the same count if `label` ran
    at it, else its largest count when that is smaller (its records/s grow with the count, so
    extrapolating upwards flatters the peer), else None (not extrapolated downwards: a
    small run is mostly start-up). Also None when `label` did not run at all."""
    measured = sorted(c for (l, c) in rows if l == label)
    if count in measured:
        return count
    if measured and max(measured) < count:
        return max(measured)
    return None


def summary_row(name, count, runs):
    """A table row: name, records, median wall s, records/s, CPU s and peak RSS MiB."""
    wall = median(runs, "wall")
    return [
        name,
        f"{count:,}",
        f"{wall:.2f}",
        fmt_rate(count / wall),
        f"{median(runs, 'cpu'):.2f}",
        f"{median(runs, 'rss'):.1f}",
    ]


def table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(cell) for cell in line) + " |" for line in lines]
    return "\n".join(out)


def report(rows, meta):
    counts = sorted({count for (label, count) in rows if label == "landfall"})
    peer_counts = sorted({count for (label, count) in rows if label.startswith(("dlt", "airbyte", "singer"))})
    rounds = meta.get("rounds", "1")
    out = []
    out.append(
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores, "
        f"{meta['memory_gib']} GiB, {meta['kernel']}). Load average (1, 5, 15 min) "
        f"before: {meta['load_before']}, after: {meta['load_after']}."
    )
    out.append("")
    out.append(
        f"`{meta['landfall_version']}` (git {meta['git']}, {meta['rustc']}); "
        + (f"dlt {meta['dlt']}; " if "dlt" in meta else "")
        + (f"{meta['airbyte']}; " if "airbyte" in meta else "")
        + (f"{meta['singer']}; " if "singer" in meta else "")
        + f"{meta['curl']}; {meta['gzip']}. Each figure is the median of {rounds} "
        "alternating round(s); every run's figures are listed at the end."
    )
    out.append("")

    # 1. The cursor stream.
    out.append("### One cursor-paginated stream (pages of 1000, about 410 bytes per record)")
    out.append("")
    lines = []
    for count in sorted(set(counts) | set(peer_counts)):
        for label, name in (
            ("landfall", "Landfall"),
            ("landfall-musl", "Landfall, static musl build (the image's binary)"),
            ("landfall-l6", "Landfall (`compression_level: 6`)"),
            ("landfall-zstd", "Landfall (`compression: zstd`, level 1)"),
            ("landfall-zstd-l3", "Landfall (`compression: zstd`, level 3)"),
            ("dlt", "dlt (defaults)"),
            ("dlt-lean", "dlt (`max_table_nesting=0`)"),
            ("airbyte", "Airbyte low-code CDK (protocol stream, gzip -1)"),
            ("singer", "Singer: tap-rest-api-msdk \\| target-jsonl, gzip -1"),
            ("bound", "curl + gzip bound"),
        ):
            runs = rows.get((label, count))
            if not runs:
                continue
            wall = median(runs, "wall")
            lines.append(
                [
                    f"{count:,}",
                    name,
                    f"{wall:.2f}",
                    fmt_rate(count / wall),
                    f"{median(runs, 'cpu'):.2f}",
                    f"{median(runs, 'rss'):.1f}",
                    landed_mib(runs),
                ]
            )
    out.append(table(["records", "tool", "wall s", "records/s", "CPU s", "peak RSS MiB", "MiB landed (gzip or zstd)"], lines))
    out.append("")

    # Ratios and targets.
    lines = []
    verdicts = []
    for count in counts:
        landfall = rows[("landfall", count)]
        rate = count / median(landfall, "wall")
        cells = [f"{count:,}"]
        for label, name in (("dlt", "dlt"), ("dlt-lean", "dlt with max_table_nesting=0")):
            base = peer_base(rows, label, count)
            if base is None:
                cells.append("(not run)")
                continue
            ratio = rate / (base / median(rows[(label, base)], "wall"))
            note = "" if base == count else f" ({name} extrapolated from its records/s at {base:,})"
            cells.append(f"{ratio:.1f}x{note}")
            verdicts.append(
                (f"throughput at {count:,}: at least {DLT_FACTOR}x {name}{note}", ratio >= DLT_FACTOR, f"{ratio:.1f}x")
            )
        dlt_base = peer_base(rows, "dlt", count)

        def versus_dlt(runs):
            """Records/s of `runs` over dlt's (at this count, or its largest one below)."""
            if not runs or dlt_base is None:
                return ""
            base = dlt_base
            return f"{(count / median(runs, 'wall')) / (base / median(rows[('dlt', base)], 'wall')):.1f}x"

        bound = rows.get(("bound", count))
        cells.append(versus_dlt(rows.get(("landfall-l6", count))))
        cells.append(versus_dlt(bound))
        if bound:
            ratio = median(landfall, "wall") / median(bound, "wall")
            cells.append(f"{ratio:.2f}x")
            cpu_ratio = median(landfall, "cpu") / median(bound, "cpu")
            cells.append(f"{cpu_ratio:.2f}x")
            verdicts.append(
                (f"time at {count:,}: within {BOUND_FACTOR}x the curl + gzip bound", ratio <= BOUND_FACTOR, f"{ratio:.2f}x")
            )
        else:
            cells += ["", ""]
        for label, name in (("airbyte", "Airbyte"), ("singer", "Singer")):
            base = peer_base(rows, label, count)
            if base is None:
                cells.append("(not run)")
                continue
            ratio = rate / (base / median(rows[(label, base)], "wall"))
            note = "" if base == count else f" ({name} extrapolated from its records/s at {base:,})"
            cells.append(f"{ratio:.1f}x{note}")
        lines.append(cells)
    out.append(
        table(
            [
                "records",
                "Landfall / dlt (records/s)",
                "Landfall / dlt, nesting 0 (records/s)",
                "Landfall level 6 / dlt (records/s)",
                "bound / dlt (records/s)",
                "Landfall / bound (wall time)",
                "Landfall / bound (CPU time)",
                "Landfall / Airbyte (records/s)",
                "Landfall / Singer (records/s)",
            ],
            lines,
        )
    )
    out.append("")
    if counts:
        largest = max(counts)
        rss_largest = median(rows[("landfall", largest)], "rss")
        verdicts.append(
            (f"peak RSS at {largest:,}: under {RSS_LIMIT_MIB} MiB", rss_largest < RSS_LIMIT_MIB, f"{rss_largest:.1f} MiB")
        )
        if 100_000 in counts and largest > 100_000:
            rss_small = median(rows[("landfall", 100_000)], "rss")
            growth = rss_largest / rss_small - 1
            verdicts.append(
                (
                    f"peak RSS flat: {largest:,} within {FLAT_LIMIT:.0%} of 100,000",
                    growth <= FLAT_LIMIT,
                    f"{growth:+.1%} ({rss_small:.1f} -> {rss_largest:.1f} MiB)",
                )
            )
    version_ms = float(meta["version_ms"])
    verdicts.append(("startup: `landfall --version` under 10 ms", version_ms < 10, f"{version_ms:.2f} ms"))
    out.append(table(["target", "met", "measured"], [[name, "yes" if ok else "**no**", value] for name, ok, value in verdicts]))
    out.append("")

    # 2. Concurrency.
    scale = sorted(
        ((int(label.split("-n")[1]), count, runs) for (label, count), runs in rows.items() if label.startswith("offset-n")),
    )
    if scale:
        count = scale[0][1]
        base_wall = median(scale[0][2], "wall")
        out.append(
            f"### Offset pagination, `rate_limit.concurrency` N, {meta['latency']} added per page ({count:,} records)"
        )
        out.append("")
        lines = []
        for concurrency, count, runs in scale:
            wall = median(runs, "wall")
            in_flight = sorted({run["notes"]["max_in_flight"] for run in runs if "max_in_flight" in run["notes"]})
            lines.append(
                [
                    concurrency,
                    f"{wall:.2f}",
                    fmt_rate(count / wall),
                    f"{base_wall / wall:.2f}x",
                    f"{median(runs, 'cpu'):.2f}",
                    f"{median(runs, 'rss'):.1f}",
                    ", ".join(in_flight),
                ]
            )
        out.append(
            table(["N", "wall s", "records/s", "speed-up vs N = 1", "CPU s", "peak RSS MiB", "API max in flight"], lines)
        )
        out.append("")

    # 3. Other paginations.
    others = [
        (label, count, runs)
        for (label, count), runs in sorted(rows.items())
        if label in ("link_header", "offset-fast-n1", "offset-fast-n4")
    ]
    if others:
        out.append("### Other paginations, no added latency")
        out.append("")
        names = {
            "link_header": "link_header",
            "offset-fast-n1": "offset, concurrency 1",
            "offset-fast-n4": "offset, concurrency 4",
        }
        lines = [
summary_row(names[label], count, runs)
            for label, count, runs in others
        ]
        out.append(table(["pagination", "records", "wall s", "records/s", "CPU s", "peak RSS MiB"], lines))
        out.append("")

    # The shipped binary against the glibc build, and zstd against the bound.
    lines = []
    for count in counts:
        glibc, musl, bound = (rows.get((label, count)) for label in ("landfall", "landfall-musl", "bound"))
        zstd = rows.get(("landfall-zstd", count))
        if glibc and musl:
            ratio = median(musl, "wall") / median(glibc, "wall")
            lines.append([f"{count:,}", "musl build (image) / glibc build, wall", f"{ratio:.2f}x", "at most 1.05x"])
        if zstd and bound:
            ratio = median(zstd, "wall") / median(bound, "wall")
            lines.append([f"{count:,}", "`compression: zstd` / curl + gzip bound, wall", f"{ratio:.2f}x", "at most 0.70x"])
            gzip1 = [int(run["notes"]["gzip_bytes"]) for run in glibc or [] if "gzip_bytes" in run["notes"]]
            zbytes = [int(run["notes"]["gzip_bytes"]) for run in zstd if "gzip_bytes" in run["notes"]]
            if gzip1 and zbytes:
                size = statistics.median(zbytes) / statistics.median(gzip1)
                lines.append([f"{count:,}", "`compression: zstd` bytes / gzip level 1 bytes", f"{size:.2f}x", "at most 1.00x"])
    if lines:
        out.append("### The shipped binary and zstd")
        out.append("")
        out.append(table(["records", "ratio", "measured", "target"], lines))
        out.append("")

    # Many streams.
    many = [(label, count, runs) for (label, count), runs in sorted(rows.items()) if label.startswith("streams-")]
    if many:
        names = {
            "streams-8-in-1": "8 streams in one process (`max_concurrent_streams: 8`)",
            "streams-8-procs": "8 processes, one stream each (peak RSS: the largest process)",
            "streams-1": "one stream of as many records",
        }
        out.append("### Many streams (the musl binary, pages of 1000)")
        out.append("")
        lines = [
summary_row(names[label], count, runs)
            for label, count, runs in many
        ]
        out.append(table(["how", "records", "wall s", "records/s", "CPU s", "peak RSS MiB"], lines))
        out.append("")

    # 4. Startup and size.
    out.append("### Startup and size")
    out.append("")
    out.append(
        table(
            ["what", "measured"],
            [
                ["`landfall --version`, mean of 200 runs", f"{version_ms:.2f} ms"],
                ["`landfall --version`, peak RSS", f"{int(meta['version_rss_kib']) / 1024:.1f} MiB"],
                ["release binary, glibc (stripped, fat LTO)", f"{int(meta['binary_bytes']) / 1048576:.1f} MiB"],
                *(
                    [["release binary, static musl (the image's)", f"{int(meta['musl_binary_bytes']) / 1048576:.1f} MiB"]]
                    if "musl_binary_bytes" in meta
                    else []
                ),
            ],
        )
    )
    out.append("")

    # Every run.
    out.append("<details><summary>Every run</summary>")
    out.append("")
    lines = [
        [label, f"{count:,}", run["round"], f"{run['wall']:.2f}", f"{run['cpu']:.2f}", f"{run['rss']:.1f}", run["extra"]]
        for (label, count), runs in sorted(rows.items())
        for run in runs
    ]
    out.append(table(["run", "records", "round", "wall s", "CPU s", "peak RSS MiB", "note"], lines))
    out.append("")
    out.append("</details>")
    return "\n".join(out)


def main():
    tsv_path, meta_path, out_path = sys.argv[1:4]
    meta = {}
    with open(meta_path) as env:
        for line in env:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    body = BEGIN + "\n" + report(load(tsv_path), meta) + "\n" + END
    try:
        with open(out_path) as existing:
            text = existing.read()
    except FileNotFoundError:
        text = ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + body + text[text.index(END) + len(END) :]
    else:
        text = "# Landfall benchmark results\n\nWritten by `bench/run`.\n\n" + body + "\n"
    with open(out_path, "w") as out:
        out.write(text)


if __name__ == "__main__":
    main()
