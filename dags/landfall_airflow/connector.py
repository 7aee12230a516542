"""The few facts a DAG needs from a landfall connector config, read without I/O beyond the file.

The binary validates the whole config (`landfall validate`); here we read only the source
name, the stream names and the landing URL, so that parsing stays fast and needs no network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

try:  # libyaml is several times faster when PyYAML was built with it
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConnectorConfigError(ValueError):
    """A connector config that cannot become a DAG; the message names the file."""


@dataclass(frozen=True)
class ConnectorConfig:
    """What the DAG factory reads from one connector config file."""

    path: Path
    source: str
    streams: tuple[str, ...]
    landing_url: str | None
    """`landing.url` with `${env:NAME:-default}` resolved from the parsing environment, or
    None when it refers to a variable that is unset there and has no default."""

    @property
    def stem(self) -> str:
        """File name without `.yaml`/`.yml`: the key of the sidecar `<stem>.airflow.yaml`."""
        return self.path.name.rsplit(".", 1)[0]


def load(path: Path) -> ConnectorConfig:
    """Read one connector config (CONTRACT section 1)."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError) as error:
        raise ConnectorConfigError(f"{path}: cannot read connector config: {error}") from error
    if not isinstance(document, dict):
        raise ConnectorConfigError(f"{path}: a connector config is a mapping with source, streams and landing")

    source = document.get("source")
    source_name = source.get("name") if isinstance(source, dict) else None
    if not isinstance(source_name, str) or not NAME_PATTERN.match(source_name):
        raise ConnectorConfigError(f"{path}: source.name must match [a-z][a-z0-9_]*, got {source_name!r}")

    streams = document.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ConnectorConfigError(f"{path}: streams must be a non-empty list")
    names: list[str] = []
    for index, stream in enumerate(streams):
        name = stream.get("name") if isinstance(stream, dict) else None
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ConnectorConfigError(f"{path}: streams[{index}].name must match [a-z][a-z0-9_]*, got {name!r}")
        if name in names:
            raise ConnectorConfigError(f"{path}: streams[{index}].name {name!r} is used twice")
        names.append(name)

    landing = document.get("landing")
    raw_url = landing.get("url") if isinstance(landing, dict) else None
    landing_url = resolve_env_references(raw_url) if isinstance(raw_url, str) else "file://./landing"
    return ConnectorConfig(path=path, source=source_name, streams=tuple(names), landing_url=landing_url)


def resolve_env_references(value: str, environ: dict[str, str] | None = None) -> str | None:
    """Resolve `${env:NAME}` and `${env:NAME:-default}`; None if one cannot be resolved.

    `${file:...}` references are left alone: they do not occur in landing URLs in practice,
    and reading secrets at parse time is what this module must not do.
    """
    environ = os.environ if environ is None else environ
    unresolved = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal unresolved
        name, default = match.group(1), match.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        unresolved = True
        return ""

    resolved = _ENV_REFERENCE.sub(substitute, value)
    if unresolved or "${" in resolved:
        return None
    return resolved
