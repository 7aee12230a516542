"""The dlt side of Landfall's database benchmark: one table read with dlt's `sql_database`
source and landed as gzip JSONL on the local filesystem (the `filesystem` destination).

Usage: python dlt_sql.py URL BACKEND TABLE ROWS OUT_DIR PIPELINES_DIR

URL is a SQLAlchemy URL (postgresql+psycopg2://..., mysql+pymysql://...), BACKEND
`sqlalchemy` or `pyarrow`. dlt runs with its defaults otherwise (chunk_size 50000, the same
as Landfall's config in the benchmark), telemetry off, gzip on its jsonl files. Exits
non-zero unless dlt normalised exactly ROWS rows of TABLE.
"""

import os
import sys

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
# MariaDB's DOUBLE reaches pyarrow as Python Decimals (SQLAlchemy's MySQL DOUBLE has
# asdecimal=True), whose inferred precision differs between chunks; dlt refuses to append such a
# chunk to the same file unless arrow may promote types, which its error message says to allow.
os.environ.setdefault("DATA_WRITER__ARROW_CONCAT_PROMOTE_OPTIONS", "permissive")

import dlt  # noqa: E402
from dlt.sources.sql_database import sql_database  # noqa: E402


def main() -> None:
    url, backend, table, rows, out_dir, pipelines_dir = sys.argv[1:7]
    source = sql_database(credentials=url, table_names=[table], backend=backend, chunk_size=50000)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_db_{backend}",
        pipelines_dir=pipelines_dir,
        destination=dlt.destinations.filesystem(bucket_url=f"file://{os.path.abspath(out_dir)}"),
        dataset_name="bench",
    )
    info = pipeline.run(source, loader_file_format="jsonl")
    info.raise_on_failed_jobs()
    landed = pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)
    if landed != int(rows):
        sys.exit(f"dlt ({backend}) landed {landed} rows, expected {rows}")
    print(f"dlt ({backend}) landed {landed} rows")


if __name__ == "__main__":
    main()
