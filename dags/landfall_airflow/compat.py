"""Names that moved between Airflow 2.10 and Airflow 3, imported from wherever they live."""

from __future__ import annotations

from airflow import __version__ as AIRFLOW_VERSION

AIRFLOW_3 = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3

if AIRFLOW_3:
    from airflow.sdk import DAG
    from airflow.sdk import Asset as Asset
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )
else:  # Airflow 2.10
    from airflow.datasets import Dataset as Asset
    from airflow.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )
    from airflow.models.dag import DAG

try:  # the Task SDK's own timetables (Airflow 3.1+)
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:
    from airflow.timetables.interval import CronDataIntervalTimetable

try:  # the standard provider (always there on Airflow 3, optional on 2.10)
    from airflow.providers.standard.hooks.subprocess import SubprocessHook
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2.10 without the standard provider
    from airflow.hooks.subprocess import SubprocessHook
    from airflow.operators.bash import BashOperator


def exponential_backoff_argument(multiplier: float) -> float | bool:
    """`retry_exponential_backoff` as this Airflow wants it.

    Airflow 3.1+ takes the delay multiplier (a float; 1.0 means no growth), older versions a
    flag that doubles the delay each retry; there, any multiplier above 1 becomes True.
    """
    if AIRFLOW_3:
        from airflow.sdk.bases.operator import BASEOPERATOR_ARGS_EXPECTED_TYPES
    else:
        from airflow.models.baseoperator import BASEOPERATOR_ARGS_EXPECTED_TYPES
    expected = BASEOPERATOR_ARGS_EXPECTED_TYPES.get("retry_exponential_backoff", bool)
    if expected is bool:
        return multiplier > 1
    return float(multiplier)


def get_variable(key: str) -> str | None:
    """An Airflow Variable, or None when it is unset or no metadata database is reachable.

    Both versions look in `AIRFLOW_VAR_<KEY>` environment variables and the configured
    secrets backend before the metadata database.
    """
    try:
        if AIRFLOW_3:
            from airflow.sdk import Variable

            return Variable.get(key, default=None)
        from airflow.models import Variable

        return Variable.get(key, default_var=None)
    except Exception:  # noqa: BLE001 - parsing must not fail because Variables are unreachable
        return None


__all__ = [
    "AIRFLOW_3",
    "AIRFLOW_VERSION",
    "DAG",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "Asset",
    "BashOperator",
    "CronDataIntervalTimetable",
    "SubprocessHook",
    "exponential_backoff_argument",
    "get_variable",
]
