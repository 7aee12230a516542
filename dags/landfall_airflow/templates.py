"""Jinja templates Airflow renders into landfall's arguments when a task runs."""

# The run's data interval as RFC 3339 (2024-03-01T00:00:00+00:00), or "" when the run has none
# (e.g. an Airflow 3 manual run without a logical date): the window options are then left out
# and landfall reads from its checkpoint.
DATA_INTERVAL_START = "{{ data_interval_start | ts if data_interval_start else '' }}"
DATA_INTERVAL_END = "{{ data_interval_end | ts if data_interval_end else '' }}"
