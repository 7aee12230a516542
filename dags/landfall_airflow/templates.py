"""Jinja templates Airflow renders into landfall's arguments when a task runs."""

# The run's data interval as RFC 3339 (2024-03-01T00:00:00+00:00), or "" when the run has none
# (e.g. an Airflow 3 manual run without a logical date): the options are then left out.
DATA_INTERVAL_START = "{{ data_interval_start | ts if data_interval_start else '' }}"
DATA_INTERVAL_END = "{{ data_interval_end | ts if data_interval_end else '' }}"

# The window of an explicit backfill, or "" for a scheduled run (which reads from the
# checkpoint): a manual trigger's `start`/`end` params (or conf), else the data interval of a
# backfill run (Airflow 3 `airflow backfill create`, Airflow 2.10 `airflow dags backfill`).
_BACKFILL = "dag_run and dag_run.run_type == 'backfill'"
BACKFILL_START = (
    "{{ params.get('start') or ((data_interval_start | ts) if (" + _BACKFILL + " and data_interval_start) else '') }}"
)
BACKFILL_END = (
    "{{ params.get('end') or ((data_interval_end | ts) if (" + _BACKFILL + " and data_interval_end) else '') }}"
)

# Interval mode (opt-in): every run reads its data interval, or the `start`/`end` params.
INTERVAL_START = "{{ params.get('start') or (data_interval_start | ts if data_interval_start else '') }}"
INTERVAL_END = "{{ params.get('end') or (data_interval_end | ts if data_interval_end else '') }}"

# The OpenLineage parent of a landfall run: the task instance's run as Airflow's OpenLineage
# provider names it (`namespace/dag_id.task_id/run_id`), or "" when the provider is not
# installed or not enabled (its macros exist only when a transport is configured). landfall
# reads it as OPENLINEAGE_PARENT_ID and ignores it when empty.
_OPENLINEAGE_MACROS = "macros is defined and macros.OpenLineageProviderPlugin is defined"
LINEAGE_PARENT_ID = (
    "{{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) if ("
    + _OPENLINEAGE_MACROS
    + ") else '' }}"
)
