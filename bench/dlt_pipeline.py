"""The dlt side of Landfall's benchmark: the same bench API, the same records, landed as
gzip JSONL on the local filesystem with dlt's `rest_api` source and `filesystem`
destination.

Usage: python dlt_pipeline.py BASE_URL RECORDS OUT_DIR PIPELINES_DIR

dlt runs with its defaults (nested lists become child tables, nested objects are
flattened into columns), no incremental state, telemetry off, and the default gzip
compression of its jsonl files. With BENCH_DLT_MAX_TABLE_NESTING=0 it keeps nested values
as JSON in one table instead, which is less work: bench/run measures both.
"""

import os
import sys

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402


def main() -> None:
    base_url, records, out_dir, pipelines_dir = sys.argv[1:5]
    source = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "paginator": {
                    "type": "cursor",
                    "cursor_path": "meta.next_cursor",
                    "cursor_param": "cursor",
                },
            },
            "resources": [
                {
                    "name": "orders",
                    "endpoint": {
                        "path": "cursor",
                        "params": {"limit": 1000, "total": int(records)},
                        "data_selector": "data",
                    },
                }
            ],
        },
        name="bench",
        max_table_nesting=int(os.environ["BENCH_DLT_MAX_TABLE_NESTING"]) if os.environ.get("BENCH_DLT_MAX_TABLE_NESTING") else None,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=pipelines_dir,
        destination=dlt.destinations.filesystem(bucket_url=f"file://{os.path.abspath(out_dir)}"),
        dataset_name="bench",
    )
    info = pipeline.run(source, loader_file_format="jsonl")
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("orders", 0)
    if rows != int(records):
        sys.exit(f"dlt landed {rows} rows, expected {records}")
    print(f"dlt landed {rows} rows")


if __name__ == "__main__":
    main()
