"""DAG settings: built-in defaults, overridden by deployment defaults, overridden per connector.

The connector config is strict and has no Airflow keys, so a DAG's settings live beside it:

1. the defaults in `DEFAULTS` below;
2. `defaults.airflow.yaml` in the config folder (deployment-wide, kept in Git);
3. the Airflow Variable `landfall_airflow_defaults` (JSON, deployment-wide, kept in Airflow);
4. `<name>.airflow.yaml` next to `<name>.yaml` (one connector).

Later layers override earlier ones key by key (mappings merge, other values replace). Keys
are checked like the connector config's: an unknown key is an error that names it.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pendulum
import yaml

from landfall_airflow.exit_codes import PARTIAL_POLICIES

DEFAULTS_FILE_NAME = "defaults.airflow.yaml"
SIDECAR_SUFFIX = ".airflow.yaml"

# `None` means "derived from the connector" (see `resolve`).
DEFAULTS: dict[str, Any] = {
    # DAG
    "dag_id": None,  # landfall_<source>
    "description": None,
    "schedule": "@daily",  # cron expression or preset (runs span data intervals), null = manual only
    "timezone": "UTC",  # of the schedule and of a start_date/end_date without offset
    "start_date": "2024-01-01",
    "end_date": None,
    "catchup": False,
    "max_active_runs": 1,  # runs of one connector share its checkpoints: never overlap them
    "max_active_tasks": 16,
    "dagrun_timeout": None,
    "tags": ["landfall"],
    "owner": "landfall",
    "streams": None,  # subset of the connector's streams; null = all
    # checkpoint: scheduled runs read from landfall's checkpoint (minus lookback) and pass the
    # data interval for the manifest only; backfills and start/end params run their window.
    # interval: every run reads its data interval minus lookback (holes possible; see README)
    "window_mode": "checkpoint",
    # source: one extraction task runs all the streams in one landfall process, which shares the
    # source's rate limit, circuit breaker and token cache (source.max_concurrent_streams at once).
    # stream: one task (one process) per stream; each gets the full rate limit, so N tasks in
    # parallel send up to N times the configured rate, and a child's task extracts its parent again.
    "task_per": "source",
    # tasks
    "retries": 3,
    "retry_delay": "2m",
    "retry_exponential_backoff": 2.0,  # delay multiplier per retry; 0 or 1 = constant delay
    "max_retry_delay": "30m",
    "execution_timeout": "2h",
    "partial_policy": "retry",  # exit code 3: retry | succeed | fail
    "pool": None,  # landfall_<source>
    "pool_slots": 1,
    "on_failure_callback": None,  # "package.module:callable", called per failed task
    "env": {},  # extra environment for landfall (both modes)
    "kubernetes": {
        "namespace": "landfall",
        "kubernetes_conn_id": "kubernetes_default",
        "in_cluster": None,
        "image": "ghcr.io/landfall-dev/landfall",
        "image_tag": "0.1.0",
        "image_pull_policy": "IfNotPresent",
        "image_pull_secrets": [],
        "service_account": "landfall",
        "config_map": None,  # landfall-<source with _ as ->, as the Helm chart names it
        "config_key": "config.yaml",
        "config_mount_path": "/etc/landfall",
        "env_from_secrets": None,  # [landfall-<source with _ as ->]
        "labels": {},
        "annotations": {},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "node_selector": {},
        "tolerations": [],
        "priority_class_name": None,
        "run_as_user": 65532,
        "run_as_group": 65532,
        "fs_group": 65532,
        "termination_grace_period": 30,  # landfall stops within 20 s of SIGTERM
        "tmp_size_limit": "1Gi",
        "startup_timeout": 600,
    },
    "dbt": {
        # auto: on in Kubernetes mode when `image` is set, in local mode when a dbt command is
        # configured or the dbt project folder exists
        "enabled": "auto",
        "select": None,  # source:<source>+
        # true on warehouses (external tables): run `dbt run-operation
        # landfall.stage_external_sources --args '{select: <source>}'` before the build
        "stage_external_sources": False,
        # after the build, `dbt source freshness --select source:<source>`: a source past its
        # error_after fails the task (and calls on_failure_callback); warn_after only warns
        "freshness": True,
        "pool": None,  # null = Airflow's default_pool
        "retries": 1,
        "execution_timeout": "1h",
        "image": None,  # the dbt image with its tag, e.g. registry.example.com/analytics-dbt:1.4.0
        "project_dir": None,  # null = the image's working directory
        "profiles_dir": None,
        "target": None,
        "extra_args": [],
        "env": {},
        "env_from_secrets": None,  # kubernetes.env_from_secrets
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
    },
    "local": {
        "workdir": None,  # LANDFALL_WORKDIR, else the folder above the dags folder
        "dbt_command": None,  # LANDFALL_DBT_COMMAND, else dbt build ... (see local.py)
    },
}

WINDOW_MODES = ("checkpoint", "interval")
TASK_PER = ("source", "stream")

_REPLACED = {
    "pass_data_interval": (
        "was replaced by window_mode: scheduled runs now read from the checkpoint "
        "(window_mode: checkpoint, the default, is what pass_data_interval: false did, plus the data "
        "interval in the manifest); window_mode: interval keeps the old behaviour, with lookback. "
        "See dags/README.md, 'Migrating from interval mode'"
    ),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_DURATION_KEYS = ("retry_delay", "max_retry_delay", "execution_timeout", "dagrun_timeout")


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the file and the key."""


def merge(base: dict[str, Any], override: dict[str, Any], *, origin: str, path: str = "") -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`, rejecting keys `DEFAULTS` does not know."""
    merged = copy.deepcopy(base)
    known = _defaults_at(path)
    for key, value in override.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key_path in _REPLACED:
            raise SettingsError(f"{origin}: {key_path!r} {_REPLACED[key_path]}")
        if key not in known:
            raise SettingsError(f"{origin}: unknown key {key_path!r}")
        if key in _ADDITIVE_MAPPINGS:
            if not isinstance(value, dict):
                raise SettingsError(f"{origin}: {key_path} must be a mapping")
            combined = dict(merged.get(key) or {})
            for name, item in value.items():
                if item is None:
                    combined.pop(name, None)  # a later layer removes an earlier entry with null
                else:
                    combined[name] = copy.deepcopy(item)
            merged[key] = combined
        elif isinstance(known[key], dict) and key not in _REPLACED_MAPPINGS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise SettingsError(f"{origin}: {key_path} must be a mapping")
            merged[key] = merge(merged.get(key) or {}, value, origin=origin, path=key_path)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Mappings whose keys are the user's, not settings keys. Additive ones combine across layers
# (null removes an entry); replaced ones are taken whole from the last layer that sets them.
_ADDITIVE_MAPPINGS = {"env", "labels", "annotations"}
_REPLACED_MAPPINGS = {"resources", "node_selector"}


def _defaults_at(path: str) -> dict[str, Any]:
    node: Any = DEFAULTS
    for part in filter(None, path.split(".")):
        node = node[part]
    return node


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"{path}: cannot read settings: {error}") from error
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: settings must be a mapping")
    return document


def parse_json_mapping(text: str, *, origin: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise SettingsError(f"{origin}: not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise SettingsError(f"{origin}: must be a JSON object")
    return document


def parse_duration(value: Any, *, key: str, origin: str) -> dt.timedelta | None:
    """`90`, `"90s"`, `"5m"`, `"2h"`, `"1d"` (numbers are seconds); null stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SettingsError(f"{origin}: {key} must be a duration like 30s, 5m or 2h, got {value!r}")
    if isinstance(value, (int, float)):
        return dt.timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise SettingsError(f"{origin}: {key} must be a duration like 30s, 5m or 2h, got {value!r}")
    return dt.timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])


def parse_date(value: Any, *, key: str, origin: str, timezone: str = "UTC") -> dt.datetime | None:
    """A date or datetime; values without an offset are in `timezone`."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as error:
            raise SettingsError(f"{origin}: {key} must be a date like 2024-01-01, got {value!r}") from error
    if parsed.tzinfo:
        return pendulum.instance(parsed)
    return pendulum.instance(parsed, tz=pendulum.timezone(timezone))


def kubernetes_name(source: str) -> str:
    """`landfall-<source>` with `_` as `-`: the Helm chart's ConfigMap name for a connector."""
    return "landfall-" + source.replace("_", "-")


def resolve(raw: dict[str, Any], *, source: str, streams: tuple[str, ...], origin: str) -> dict[str, Any]:
    """Fill derived defaults and check values; returns a new dict with typed values."""
    settings = copy.deepcopy(raw)
    settings["dag_id"] = settings["dag_id"] or f"landfall_{source}"
    settings["pool"] = settings["pool"] or f"landfall_{source}"
    settings["description"] = settings["description"] or f"landfall extraction of {source}"
    kube = settings["kubernetes"]
    kube["config_map"] = kube["config_map"] or kubernetes_name(source)
    if kube["env_from_secrets"] is None:
        kube["env_from_secrets"] = [kubernetes_name(source)]
    dbt = settings["dbt"]
    dbt["select"] = dbt["select"] or f"source:{source}+"
    if dbt["env_from_secrets"] is None:
        dbt["env_from_secrets"] = list(kube["env_from_secrets"])

    if settings["streams"] is not None:
        selected = settings["streams"]
        if not isinstance(selected, list) or not selected:
            raise SettingsError(f"{origin}: streams must be a non-empty list of stream names or null")
        unknown = [name for name in selected if name not in streams]
        if unknown:
            raise SettingsError(f"{origin}: streams lists {unknown} which the connector config does not define")
    else:
        settings["streams"] = list(streams)

    if settings["window_mode"] not in WINDOW_MODES:
        raise SettingsError(f"{origin}: window_mode must be one of {', '.join(WINDOW_MODES)}")
    if settings["task_per"] not in TASK_PER:
        raise SettingsError(f"{origin}: task_per must be one of {', '.join(TASK_PER)}")
    if settings["partial_policy"] not in PARTIAL_POLICIES:
        raise SettingsError(f"{origin}: partial_policy must be one of {', '.join(PARTIAL_POLICIES)}")
    for key in _DURATION_KEYS:
        settings[key] = parse_duration(settings[key], key=key, origin=origin)
    dbt["execution_timeout"] = parse_duration(dbt["execution_timeout"], key="dbt.execution_timeout", origin=origin)
    if not isinstance(dbt["freshness"], bool):
        raise SettingsError(f"{origin}: dbt.freshness must be true or false")
    try:
        pendulum.timezone(settings["timezone"])
    except Exception as error:
        raise SettingsError(f"{origin}: timezone {settings['timezone']!r} is not an IANA time zone") from error
    schedule = settings["schedule"]
    if schedule is not None and not isinstance(schedule, str):
        raise SettingsError(f"{origin}: schedule must be a cron expression, a preset like @daily, or null")
    for key in ("start_date", "end_date"):
        settings[key] = parse_date(settings[key], key=key, origin=origin, timezone=settings["timezone"])
    if settings["start_date"] is None:
        raise SettingsError(f"{origin}: start_date is required")
    for key in ("retries", "max_active_runs", "max_active_tasks", "pool_slots"):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] < 0:
            raise SettingsError(f"{origin}: {key} must be a non-negative integer")
    if settings["max_active_runs"] < 1:
        raise SettingsError(f"{origin}: max_active_runs must be at least 1")
    backoff = settings["retry_exponential_backoff"]
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
        raise SettingsError(f"{origin}: retry_exponential_backoff must be a multiplier >= 0 like 2.0, got {backoff!r}")
    callback = settings["on_failure_callback"]
    if callback is not None and (not isinstance(callback, str) or ":" not in callback):
        raise SettingsError(f"{origin}: on_failure_callback must look like 'package.module:function'")
    if dbt["enabled"] not in (True, False, "auto"):
        raise SettingsError(f"{origin}: dbt.enabled must be true, false or auto")
    if dbt["image"] is not None and not isinstance(dbt["image"], str):
        raise SettingsError(f"{origin}: dbt.image must be an image reference like registry/name:tag")
    _check_string_mapping(settings["env"], key="env", origin=origin)
    _check_string_mapping(dbt["env"], key="dbt.env", origin=origin)
    for key, value in (
        ("tags", settings["tags"]),
        ("kubernetes.env_from_secrets", kube["env_from_secrets"]),
        ("kubernetes.image_pull_secrets", kube["image_pull_secrets"]),
        ("dbt.env_from_secrets", dbt["env_from_secrets"]),
        ("dbt.extra_args", dbt["extra_args"]),
    ):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise SettingsError(f"{origin}: {key} must be a list of strings")
    if not isinstance(kube["tolerations"], list) or not all(isinstance(item, dict) for item in kube["tolerations"]):
        raise SettingsError(f"{origin}: kubernetes.tolerations must be a list of toleration mappings")
    return settings


def _check_string_mapping(value: Any, *, key: str, origin: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SettingsError(f"{origin}: {key} must be a mapping of names to values")
    for name, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise SettingsError(f"{origin}: {key}.{name} must be a scalar")
