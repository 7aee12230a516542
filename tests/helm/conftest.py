"""Shared fixtures for the Helm chart tests: loading, rendering and validating helm/landfall."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "landfall"
CI_VALUES = CHART_DIR / "ci"
RELEASE = "landfall"
NAMESPACE = "data-extract"


def kube_versions(count: int = 3) -> list[str]:
    """The newest `count` Kubernetes minor versions whose schemas kubernetes-validate bundles."""
    minors: list[str] = []
    for version in kv_utils.all_versions():
        minor = re.sub(r"^(\d+\.\d+).*", r"\1", version)
        if minor not in minors:
            minors.append(minor)
    return [f"{minor}.0" for minor in minors[-count:]]


KUBE_VERSIONS = kube_versions()


def load_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CI_VALUES / name).read_text())


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects duplicate mapping keys (PyYAML keeps the last silently,
    the Kubernetes API server rejects them)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class Rendered:
    """A rendered release: the manifests by template path, parsed into objects."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = files.get(f"{RELEASE}/templates/NOTES.txt", "")
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.load_all(text, Loader=UniqueKeyLoader):
                if doc:
                    doc.setdefault("__template__", path)
                    self.objects.append(doc)

    def manifest_texts(self) -> dict[str, str]:
        """The rendered template files that hold objects, as Helm wrote them."""
        return {path: text for path, text in self.files.items()
                if not path.endswith("NOTES.txt") and any(yaml.safe_load_all(text))}

    def manifests(self) -> list[dict[str, Any]]:
        """Objects without the test-only template marker."""
        return [{k: v for k, v in o.items() if k != "__template__"} for o in self.objects]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}: {self.kinds()}"
        return found[0]

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """Every pod spec rendered, with a label saying where it came from."""
        specs = []
        for o in self.objects:
            name = f"{o['kind']}/{o['metadata']['name']}"
            if o["kind"] == "Pod":
                specs.append((name, o["spec"]))
            elif o["kind"] == "CronJob":
                specs.append((name, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
            elif o["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
                specs.append((name, o["spec"]["template"]["spec"]))
        return specs


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict[str, Any] | None = None) -> Rendered:
        return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE))

    return _render


def kubernetes_validate(paths: list[Path], versions: list[str]) -> subprocess.CompletedProcess:
    """Run the kubernetes-validate CLI, strict, against each version."""
    cli = Path(sys.executable).with_name("kubernetes-validate")
    args = [str(cli), "--strict"]
    for version in versions:
        args += ["-k", version]
    return subprocess.run(
        args + [str(p) for p in paths], capture_output=True, text=True, check=False
    )
