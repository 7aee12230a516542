"""Build one DAG per connector config: check, then the extraction, then dbt.

    check ── extract ── dbt_build            (task_per: source, the default)

    check ──┬── extract_<stream 1> ──┬── dbt_build      (task_per: stream)
            ├── extract_<stream 2> ──┤
            └── ...                ──┘

`extract` runs every stream in one landfall process, which shares the source's rate limit,
circuit breaker and token cache; per-stream tasks each get the whole rate limit.
Each extraction declares an outlet Asset (Airflow 3) / Dataset (Airflow 2.10)
`<landing_url>/<source>/<stream>` per stream it lands, so downstream DAGs can be scheduled on
landed data.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any, Callable

from landfall_airflow import discovery
from landfall_airflow.compat import DAG, Asset, CronDataIntervalTimetable, exponential_backoff_argument
from landfall_airflow.discovery import Connector
from landfall_airflow.templates import (
    BACKFILL_END,
    BACKFILL_START,
    DATA_INTERVAL_END,
    DATA_INTERVAL_START,
    INTERVAL_END,
    INTERVAL_START,
    LINEAGE_PARENT_ID,
)

log = logging.getLogger(__name__)

MODES = ("kubernetes", "local")


class LandfallDagError(RuntimeError):
    """Connector configs or settings that could not become DAGs (an import error in Airflow)."""


def mode() -> str:
    chosen = os.environ.get("LANDFALL_AIRFLOW_MODE", "kubernetes").strip().lower()
    if chosen not in MODES:
        raise LandfallDagError(f"LANDFALL_AIRFLOW_MODE must be one of {', '.join(MODES)}, got {chosen!r}")
    return chosen


def build_all_dags(get_variable: discovery.VariableGetter | None = None) -> list[Any]:
    """A DAG for every connector config found (see discovery.py).

    Invalid configs raise `LandfallDagError` listing every problem, which Airflow shows as an
    import error of the DAG file, unless `LANDFALL_AIRFLOW_ON_INVALID_CONFIG=skip`: then they
    are logged and skipped and the valid connectors keep their DAGs.
    """
    run_mode = mode()
    connectors, errors = discovery.discover(get_variable)
    dags = []
    for item in connectors:
        try:
            dags.append(build_dag(item, run_mode))
        except Exception as error:  # noqa: BLE001 - reported with the config's path below
            errors.append(f"{item.config.path}: {error}")
    if errors:
        if os.environ.get("LANDFALL_AIRFLOW_ON_INVALID_CONFIG", "error").strip().lower() == "skip":
            for message in errors:
                log.error("landfall connector skipped: %s", message)
        else:
            raise LandfallDagError("invalid landfall connector configs:\n" + "\n".join(errors))
    return dags


def asset_uri(landing_url: str, source: str, stream: str) -> str:
    return f"{landing_url.rstrip('/')}/{source}/{stream}"


def import_callable(reference: str) -> Callable[..., Any]:
    """`package.module:function` -> the function."""
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{reference} is not callable")
    return target


def build_dag(item: Connector, run_mode: str | None = None) -> Any:
    config, settings = item.config, item.settings
    source = config.source
    run_mode = run_mode or mode()
    callback = import_callable(settings["on_failure_callback"]) if settings["on_failure_callback"] else None

    default_args: dict[str, Any] = {
        "owner": settings["owner"],
        "retries": settings["retries"],
        "retry_delay": settings["retry_delay"],
        "retry_exponential_backoff": exponential_backoff_argument(settings["retry_exponential_backoff"]),
        "max_retry_delay": settings["max_retry_delay"],
        "execution_timeout": settings["execution_timeout"],
        "pool": settings["pool"],
        "pool_slots": settings["pool_slots"],
    }
    if callback is not None:
        default_args["on_failure_callback"] = callback

    dag = DAG(
        dag_id=settings["dag_id"],
        description=settings["description"],
        schedule=_schedule(settings),
        start_date=settings["start_date"],
        end_date=settings["end_date"],
        catchup=settings["catchup"],
        max_active_runs=settings["max_active_runs"],
        max_active_tasks=settings["max_active_tasks"],
        dagrun_timeout=settings["dagrun_timeout"],
        default_args=default_args,
        tags=sorted({*settings["tags"], f"source:{source}"}),
        doc_md=_doc(config, settings, run_mode),
        # A manual trigger with start/end (RFC 3339) runs that window: a backfill.
        params={"start": None, "end": None},
    )
    with dag:
        if run_mode == "local":
            check, extracts, dbt = _local_tasks(item)
        else:
            check, extracts, dbt = _kubernetes_tasks(item)
        check >> extracts
        if dbt is not None:
            extracts >> dbt
    return dag


def _schedule(settings: dict[str, Any]) -> Any:
    """A cron schedule as a data-interval timetable on both Airflow versions.

    Airflow 3 turns a bare cron string into a CronTriggerTimetable whose runs have an empty
    data interval (start == end); landfall's --start/--end need the interval [previous, this).
    """
    schedule = settings["schedule"]
    if schedule is None or schedule in ("@once", "@continuous"):
        return schedule
    return CronDataIntervalTimetable(schedule, timezone=settings["timezone"])


def _outlets(item: Connector, streams: list[str]) -> list[Any]:
    landing_url = item.config.landing_url
    if landing_url is None:
        log.warning("%s: landing.url cannot be resolved at parse time; no outlet asset", item.config.path)
        return []
    return [Asset(asset_uri(landing_url, item.config.source, stream)) for stream in streams]


def extraction_units(item: Connector) -> list[tuple[str, str | None, list[str]]]:
    """The extraction tasks: `(task_id, stream label, --stream arguments)` each.

    `task_per: source` (default): one task `extract` for all the selected streams, in one
    landfall process (one rate budget); `--stream` is passed only for a subset.
    `task_per: stream`: one task `extract_<stream>` per stream.
    """
    settings = item.settings
    selected = list(settings["streams"])
    if settings["task_per"] == "stream":
        return [(f"extract_{stream}", stream, [stream]) for stream in selected]
    subset = [] if set(selected) == set(item.config.streams) else selected
    return [("extract", None, subset)]


def _streams_of(item: Connector, stream_arguments: list[str]) -> list[str]:
    return stream_arguments or list(item.settings["streams"])


def window_templates(settings: dict[str, Any]) -> dict[str, str]:
    """What each extraction passes landfall, as templates rendered when the task runs.

    `checkpoint` mode (default): a scheduled run reads from the checkpoint (minus lookback), so
    a paused DAG, catchup off or a failed run leave no hole; only a backfill (an Airflow
    backfill run, or a manual trigger with `start`/`end` params) passes a window. `interval`
    mode: every run passes its data interval as the window, stepped back by the lookback.
    The data interval is passed in both modes, for the manifest (audit only).
    """
    interval = settings["window_mode"] == "interval"
    return {
        "start": INTERVAL_START if interval else BACKFILL_START,
        "end": INTERVAL_END if interval else BACKFILL_END,
        "data_interval_start": DATA_INTERVAL_START,
        "data_interval_end": DATA_INTERVAL_END,
    }


def _window_arguments(settings: dict[str, Any]) -> list[str]:
    # Empty values ("" for a run without a window) are dropped when the pod is built.
    templates = window_templates(settings)
    arguments = [
        "--start",
        templates["start"],
        "--end",
        templates["end"],
        "--data-interval-start",
        templates["data_interval_start"],
        "--data-interval-end",
        templates["data_interval_end"],
    ]
    if settings["window_mode"] == "interval":
        arguments.append("--start-lookback")
    return arguments


def _kubernetes_tasks(item: Connector) -> tuple[Any, list[Any], Any]:
    from landfall_airflow import kubernetes

    config, settings = item.config, item.settings
    source = config.source
    kube = settings["kubernetes"]
    config_path = f"{kube['config_mount_path'].rstrip('/')}/{kube['config_key']}"
    check = kubernetes.landfall_task(
        task_id="check",
        arguments=["check", "--config", config_path],
        source=source,
        settings=settings,
        do_xcom_push=False,
    )
    extracts = [
        kubernetes.landfall_task(
            task_id=task_id,
            arguments=[
                "run",
                "--config",
                config_path,
                *(argument for stream in streams for argument in ("--stream", stream)),
                *_window_arguments(settings),
                "--xcom-output",
                kubernetes.XCOM_PATH,
            ],
            source=source,
            stream=label,
            pod_suffix="extract",
            settings=settings,
            do_xcom_push=True,
            outlets=_outlets(item, _streams_of(item, streams)),
        )
        for task_id, label, streams in extraction_units(item)
    ]
    dbt = None
    if dbt_enabled(settings, "kubernetes"):
        if not settings["dbt"]["image"]:
            raise ValueError("dbt.enabled is true but dbt.image is not set")
        dbt = kubernetes.dbt_task(task_id="dbt_build", source=source, settings=settings, **_dbt_task_kwargs(settings))
    return check, extracts, dbt


def _local_tasks(item: Connector) -> tuple[Any, list[Any], Any]:
    from landfall_airflow import local

    config, settings = item.config, item.settings
    config_path = Path(config.path).resolve()
    common = {
        "cwd": local.workdir(settings),
        "env": {name: str(value) for name, value in settings["env"].items()} or None,
        "append_env": True,
        "partial_policy": settings["partial_policy"],
    }
    check = local.LandfallBashOperator(
        task_id="check", bash_command=local.check_command(config_path), do_xcom_push=False, **common
    )
    # The window travels in environment variables (templated), never inside the script: a
    # trigger's params cannot inject shell.
    # So is the OpenLineage parent (the task's run in Airflow's OpenLineage provider, if enabled).
    window_env = {
        "OPENLINEAGE_PARENT_ID": LINEAGE_PARENT_ID,
        **(common["env"] or {}),
        **local.window_env(window_templates(settings)),
    }
    extract_common = {**common, "env": window_env}
    extracts = [
        local.LandfallBashOperator(
            task_id=task_id,
            bash_command=local.run_command(
                config_path, streams, start_lookback=settings["window_mode"] == "interval"
            ),
            do_xcom_push=True,
            parse_json_output=True,
            outlets=_outlets(item, _streams_of(item, streams)),
            **extract_common,
        )
        for task_id, _, streams in extraction_units(item)
    ]
    dbt = None
    if dbt_enabled(settings, "local"):
        dbt = local.LandfallBashOperator(
            task_id="dbt_build",
            bash_command=local.dbt_command(config.source, settings["dbt"]["select"], settings),
            do_xcom_push=False,
            cwd=local.dbt_workdir(settings),
            env=common["env"],
            append_env=True,
            apply_exit_code_policy=False,  # dbt's exit codes are not landfall's
            **_dbt_task_kwargs(settings),
        )
    return check, extracts, dbt


def dbt_enabled(settings: dict[str, Any], run_mode: str) -> bool:
    """Whether the DAG ends with dbt_build (see `dbt.enabled` in settings.py)."""
    enabled = settings["dbt"]["enabled"]
    if enabled != "auto":
        return bool(enabled)
    if run_mode == "kubernetes":
        return bool(settings["dbt"]["image"])
    from landfall_airflow import local

    return local.dbt_configured(settings)


def _dbt_task_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    dbt = settings["dbt"]
    kwargs: dict[str, Any] = {
        "retries": dbt["retries"],
        "execution_timeout": dbt["execution_timeout"],
        "pool": dbt["pool"] or "default_pool",
        "pool_slots": 1,
    }
    return kwargs


def _doc(config: Any, settings: dict[str, Any], run_mode: str) -> str:
    streams = ", ".join(f"`{name}`" for name in settings["streams"])
    return (
        f"### landfall: `{config.source}`\n\n"
        f"Connector config `{config.path.name}`; streams {streams}; mode `{run_mode}`.\n\n"
        f"`check` tests connectivity, {_extract_doc(settings)} ({_mode_doc(settings)}), "
        f"`dbt_build` (when enabled) runs `dbt build --select {settings['dbt']['select']}` "
        "once every stream has landed.\n\n"
        "Exit codes 2 (config) and 4 (auth) fail without retry; 1 and 75 are retried with backoff; "
        f"3 (partial) follows `partial_policy: {settings['partial_policy']}`. See dags/README.md."
    )


def _extract_doc(settings: dict[str, Any]) -> str:
    if settings["task_per"] == "stream":
        return (
            "each `extract_<stream>` runs `landfall run --stream <stream>` "
            "(task_per: stream: every task gets the source's whole rate limit)"
        )
    return "`extract` runs `landfall run` for all the streams in one process (one rate budget)"


def _mode_doc(settings: dict[str, Any]) -> str:
    if settings["window_mode"] == "interval":
        return "window mode `interval`: over the run's data interval minus lookback"
    return "window mode `checkpoint`: from the checkpoint; backfills and `start`/`end` params run their window"
