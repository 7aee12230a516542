"""Find the connector configs to turn into DAGs, and the settings of each.

Where configs come from (the first that is set wins):

1. Airflow Variable `landfall_configs`: a JSON list of config paths (relative paths are
   relative to the config folder), for deployments that list connectors explicitly;
2. otherwise every `*.yaml` / `*.yml` in the config folder, except `*.airflow.yaml` sidecars
   and `defaults.airflow.yaml`.

The config folder: Airflow Variable `landfall_config_dir`, else environment variable
`LANDFALL_CONFIG_DIR`, else `<dags folder>/configs` when it exists, else the repository's
`config-examples/` beside the dags folder.

Set `LANDFALL_AIRFLOW_VARIABLES=false` to skip Variable lookups altogether (each lookup is a
metadata-database query at parse time on Airflow 2 unless the Variable is an
`AIRFLOW_VAR_*` environment variable or lives in a secrets backend).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from landfall_airflow import connector, settings

DAGS_FOLDER = Path(__file__).resolve().parent.parent
VARIABLE_CONFIG_DIR = "landfall_config_dir"
VARIABLE_CONFIGS = "landfall_configs"
VARIABLE_DEFAULTS = "landfall_airflow_defaults"

VariableGetter = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Connector:
    """One connector config and the resolved settings of its DAG."""

    config: connector.ConnectorConfig
    settings: dict[str, Any]


def variables_enabled() -> bool:
    return os.environ.get("LANDFALL_AIRFLOW_VARIABLES", "true").strip().lower() not in ("0", "false", "no", "off")


def default_variable_getter() -> VariableGetter:
    if not variables_enabled():
        return lambda _key: None
    from landfall_airflow.compat import get_variable

    return get_variable


def config_dir(get_variable: VariableGetter) -> Path:
    chosen = get_variable(VARIABLE_CONFIG_DIR) or os.environ.get("LANDFALL_CONFIG_DIR")
    if chosen:
        return Path(chosen).expanduser()
    bundled = DAGS_FOLDER / "configs"
    if bundled.is_dir():
        return bundled
    return DAGS_FOLDER.parent / "config-examples"


def config_files(directory: Path, get_variable: VariableGetter) -> list[Path]:
    listed = get_variable(VARIABLE_CONFIGS)
    if listed:
        try:
            names = json.loads(listed)
        except ValueError as error:
            raise settings.SettingsError(f"Variable {VARIABLE_CONFIGS}: not a JSON list: {error}") from error
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise settings.SettingsError(f"Variable {VARIABLE_CONFIGS}: must be a JSON list of paths")
        return [directory / name for name in names]  # an absolute name replaces the folder
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in (".yaml", ".yml")
        and not path.name.endswith((".airflow.yaml", ".airflow.yml"))
        and path.is_file()
    )


def sidecar_path(config_path: Path) -> Path:
    stem = config_path.name.rsplit(".", 1)[0]
    return config_path.with_name(stem + settings.SIDECAR_SUFFIX)


def discover(get_variable: VariableGetter | None = None) -> tuple[list[Connector], list[str]]:
    """All connectors with their settings, and one message per config that could not be used."""
    get_variable = get_variable or default_variable_getter()
    errors: list[str] = []
    directory = config_dir(get_variable)

    base = settings.DEFAULTS
    defaults_file = directory / settings.DEFAULTS_FILE_NAME
    try:
        if defaults_file.is_file():
            base = settings.merge(base, settings.read_yaml_mapping(defaults_file), origin=str(defaults_file))
        variable_defaults = get_variable(VARIABLE_DEFAULTS)
        if variable_defaults:
            origin = f"Variable {VARIABLE_DEFAULTS}"
            base = settings.merge(base, settings.parse_json_mapping(variable_defaults, origin=origin), origin=origin)
        paths = config_files(directory, get_variable)
    except settings.SettingsError as error:
        return [], [str(error)]

    connectors: list[Connector] = []
    for path in paths:
        try:
            config = connector.load(path)
            raw, origin = base, f"{path} (DAG settings)"
            sidecar = sidecar_path(path)
            if sidecar.is_file():
                origin = str(sidecar)
                raw = settings.merge(base, settings.read_yaml_mapping(sidecar), origin=origin)
            resolved = settings.resolve(raw, source=config.source, streams=config.streams, origin=origin)
        except (connector.ConnectorConfigError, settings.SettingsError) as error:
            errors.append(str(error))
            continue
        connectors.append(Connector(config=config, settings=resolved))

    seen: dict[str, Path] = {}
    unique: list[Connector] = []
    for item in connectors:
        dag_id = item.settings["dag_id"]
        if dag_id in seen:
            errors.append(f"{item.config.path}: dag_id {dag_id!r} is already used by {seen[dag_id]}")
            continue
        seen[dag_id] = item.config.path
        unique.append(item)
    return unique, errors
