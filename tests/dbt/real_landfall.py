"""Runs the real binary: `landfall demo --serve --port 0`, then `landfall run` against it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, landfall_bin

DEMO_CONFIG = ROOT / "config-examples" / "demo.yaml"
REFERENCE_SOURCES = ROOT / "dbt" / "models" / "sources" / "demo" / "demo.yml"


def require_landfall(tmp_path: Path) -> Path:
    """A private copy of the binary (the lead may rebuild it mid-run), or skip."""
    found = landfall_bin()
    if found is None:
        pytest.skip(
            "LANDFALL_BIN (default target/debug/landfall) is absent or does not answer "
            "`--version` with `landfall ...` yet: real-binary dbt tests not run"
        )
    if not DEMO_CONFIG.is_file():
        pytest.skip(f"{DEMO_CONFIG} does not exist yet: real-binary dbt tests not run")
    copy = tmp_path / "landfall"
    shutil.copy2(found, copy)
    return copy


@contextmanager
def demo_api(binary: Path):
    proc = subprocess.Popen(
        [str(binary), "demo", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), f"unexpected first line: {line!r}"
        yield line.removeprefix("listening on ")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def landfall_run(
    binary: Path, api_url: str, landing_dir: Path, workdir: Path, config: Path = DEMO_CONFIG
) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEMO_API_URL": api_url, "LANDFALL_LANDING_URL": landing_dir.as_uri()}
    proc = subprocess.run(
        [str(binary), "run", "--config", str(config)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"landfall run exited {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc


def land_with_landfall(
    binary: Path, landing_dir: Path, workdir: Path, runs: int = 1, config: Path = DEMO_CONFIG
) -> None:
    with demo_api(binary) as url:
        for _ in range(runs):
            landfall_run(binary, url, landing_dir, workdir, config)


def dbt_sources(binary: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    """`landfall dbt-sources --config CONFIG ARGS...`, asserted to succeed."""
    proc = subprocess.run(
        [str(binary), "dbt-sources", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def generate_sources(binary: Path, sources_dir: Path, staging_dir: Path | None = None, config: Path = DEMO_CONFIG) -> None:
    """Writes sources_dir/<source>.yml (and the staging models into staging_dir) with
    `landfall dbt-sources`, replacing what the project shipped there."""
    args = ["--out", str(sources_dir)]
    if staging_dir is not None:
        shutil.rmtree(staging_dir, ignore_errors=True)
        args += ["--staging", str(staging_dir)]
    dbt_sources(binary, config, *args)
