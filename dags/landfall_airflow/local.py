"""Local mode (`LANDFALL_AIRFLOW_MODE=local`): Bash tasks that run landfall and dbt on the worker.

For development and CI: `airflow dags test <dag_id> <date>` then runs a DAG end to end with
the `landfall` binary named by `LANDFALL_BIN` (read when the task runs; default `landfall`
on PATH) and dbt from the worker's environment. The extraction task writes landfall's
`--xcom-output` to a temporary file and prints it, flattened to one line, as its last output
line, which the task parses and returns: its XCom holds the same JSON document as in
Kubernetes mode.
"""

from __future__ import annotations

import os
import shlex
from functools import cached_property
from pathlib import Path
from typing import Any

from landfall_airflow.compat import AirflowException, AirflowFailException, BashOperator, SubprocessHook
from landfall_airflow.discovery import DAGS_FOLDER
from landfall_airflow.exit_codes import describe
from landfall_airflow.policy import enforce, parse_xcom

LANDFALL = '"${LANDFALL_BIN:-landfall}"'


class _LandfallSubprocessHook(SubprocessHook):
    """SubprocessHook that applies landfall's exit-code policy to the command it ran.

    Fail-fast codes raise `AirflowFailException` from here; a partial run under
    `partial_policy: succeed` is reported to BashOperator as exit code 0; every other code
    goes back unchanged, and BashOperator fails the attempt so that Airflow retries it.
    (The policy sits in the hook, not in an `execute` override, because Airflow 2.10 warns
    about operators whose `execute` calls their parent's.)
    """

    def __init__(self, partial_policy: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.partial_policy = partial_policy

    def run_command(self, *args: Any, **kwargs: Any) -> Any:
        result = super().run_command(*args, **kwargs)
        if result.exit_code == 0:
            return result
        error = AirflowException(f"landfall {describe(result.exit_code)}")
        try:
            enforce(result.exit_code, self.partial_policy, error, self.log)
        except AirflowFailException:
            raise
        except AirflowException:
            return result  # BashOperator fails this attempt; Airflow retries it
        return result._replace(exit_code=0)  # partial run accepted as success


class LandfallBashOperator(BashOperator):
    """BashOperator running landfall under its exit-code policy (see exit_codes.py)."""

    def __init__(
        self,
        *,
        partial_policy: str = "retry",
        parse_json_output: bool = False,
        apply_exit_code_policy: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("skip_on_exit_code", None)  # BashOperator skips on 99; landfall has no such code
        if parse_json_output:
            kwargs.setdefault("output_processor", parse_xcom)
        super().__init__(**kwargs)
        self.partial_policy = partial_policy
        self.apply_exit_code_policy = apply_exit_code_policy

    @cached_property
    def subprocess_hook(self) -> Any:
        if not self.apply_exit_code_policy:
            return SubprocessHook()
        return _LandfallSubprocessHook(self.partial_policy)


def workdir(settings: dict[str, Any]) -> str:
    """Where landfall runs: relative landing URLs such as file://./landing resolve here."""
    chosen = os.environ.get("LANDFALL_WORKDIR") or settings["local"]["workdir"]
    return str(Path(chosen).expanduser() if chosen else DAGS_FOLDER.parent)


def check_command(config_path: Path) -> str:
    return f"exec {LANDFALL} check --config {shlex.quote(str(config_path))}"


WINDOW_ENV = {
    "start": "LANDFALL_DAG_START",
    "end": "LANDFALL_DAG_END",
    "data_interval_start": "LANDFALL_DAG_INTERVAL_START",
    "data_interval_end": "LANDFALL_DAG_INTERVAL_END",
}


def window_env(templates: dict[str, str]) -> dict[str, str]:
    """The window templates (see factory.window_templates) as environment variables."""
    return {WINDOW_ENV[name]: template for name, template in templates.items()}


def run_command(config_path: Path, streams: list[str], *, start_lookback: bool) -> str:
    start, end = WINDOW_ENV["start"], WINDOW_ENV["end"]
    interval_start, interval_end = WINDOW_ENV["data_interval_start"], WINDOW_ENV["data_interval_end"]
    window = (
        f' ${{{start}:+--start "${start}"}} ${{{end}:+--end "${end}"}}'
        f' ${{{interval_start}:+--data-interval-start "${interval_start}"}}'
        f' ${{{interval_end}:+--data-interval-end "${interval_end}"}}'
    )
    if start_lookback:
        window += " --start-lookback"
    return "\n".join(
        [
            'xcom_file="$(mktemp "${TMPDIR:-/tmp}/landfall-xcom.XXXXXX")"',
            "trap 'rm -f \"$xcom_file\"' EXIT",
            f"{LANDFALL} run --config {shlex.quote(str(config_path))}"
            + "".join(f" --stream {shlex.quote(stream)}" for stream in streams)
            + f'{window} --xcom-output "$xcom_file"',
            "status=$?",
            # the XCom document, flattened to one line, is the last line of output
            "if [ -s \"$xcom_file\" ]; then echo; tr '\\n' ' ' < \"$xcom_file\"; echo; fi",
            'exit "$status"',
        ]
    )


def dbt_project_dir() -> Path:
    return Path(os.environ.get("LANDFALL_DBT_PROJECT_DIR") or DAGS_FOLDER.parent / "dbt").expanduser()


def dbt_workdir(settings: dict[str, Any]) -> str:
    """dbt runs in its project folder, where the project's relative defaults point
    (the repository's dbt profile reads `file://../landing` into `landfall.duckdb`)."""
    project = dbt_project_dir()
    return str(project) if project.is_dir() else workdir(settings)


def dbt_configured(settings: dict[str, Any]) -> bool:
    configured = os.environ.get("LANDFALL_DBT_COMMAND") or settings["local"]["dbt_command"]
    return bool(configured) or dbt_project_dir().is_dir()


def dbt_command(source: str, select: str, settings: dict[str, Any]) -> str:
    """`LANDFALL_DBT_COMMAND`, else `local.dbt_command`, else dbt build on the repo's dbt project
    followed (with `dbt.freshness`) by `dbt source freshness` of the connector's source.

    `{source}` and `{select}` in a configured command are replaced by the connector's values.
    """
    configured = os.environ.get("LANDFALL_DBT_COMMAND") or settings["local"]["dbt_command"]
    if configured:
        return configured.replace("{source}", source).replace("{select}", select)
    quoted = shlex.quote(str(dbt_project_dir()))
    dirs = f"--project-dir {quoted} --profiles-dir {quoted}"
    build = f"dbt build --select {shlex.quote(select)} {dirs}"
    if settings["dbt"]["freshness"]:
        build += f" && dbt source freshness --select {shlex.quote('source:' + source)} {dirs}"
    if settings["dbt"]["stage_external_sources"]:
        stage_args = shlex.quote(f"{{select: {source}}}")
        return f"dbt run-operation landfall.stage_external_sources --args {stage_args} {dirs} && {build}"
    return build
