"""Runs the real binary: `landfall demo --serve --port 0`, then `landfall run` against it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, landfall_bin

DEMO_CONFIG = ROOT / "config-examples" / "demo.yaml"
REFERENCE_SOURCES = ROOT / "dbt" / "models" / "sources" / "demo.yml"


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


def landfall_run(binary: Path, api_url: str, landing_dir: Path, workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEMO_API_URL": api_url, "LANDFALL_LANDING_URL": landing_dir.as_uri()}
    proc = subprocess.run(
        [str(binary), "run", "--config", str(DEMO_CONFIG)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"landfall run exited {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc


def land_with_landfall(binary: Path, landing_dir: Path, workdir: Path, runs: int = 1) -> None:
    with demo_api(binary) as url:
        for _ in range(runs):
            landfall_run(binary, url, landing_dir, workdir)


def generate_sources(binary: Path, out_dir: Path) -> bool:
    """Writes out_dir/demo.yml with `landfall dbt-sources`; False (reference kept) when the
    command is not implemented yet."""
    # Outside models/: a second demo.yml under the model paths is a duplicate source to dbt.
    scratch = out_dir.parent.parent / "_generated_sources"
    scratch.mkdir(exist_ok=True)
    proc = subprocess.run(
        [str(binary), "dbt-sources", "--config", str(DEMO_CONFIG), "--out", str(scratch)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    generated = scratch / "demo.yml"
    if proc.returncode != 0 or not generated.is_file():
        warnings.warn(
            f"`landfall dbt-sources` not usable yet (exit {proc.returncode}: {proc.stderr.strip()[:200]}); "
            "using the reference dbt/models/sources/demo.yml"
        )
        return False
    shutil.copy(generated, out_dir / "demo.yml")
    return True
