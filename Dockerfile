# syntax=docker/dockerfile:1
# landfall container image: a static musl binary on scratch, for linux/amd64 and linux/arm64.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg GIT_SHA="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(git log -1 --format=%cI HEAD)" \
#     -t ghcr.io/landfall-dev/landfall:0.1.0 .
#
# The builder runs on the build machine's platform and cross-compiles when the target platform
# differs (cargo-zigbuild, with zig from PyPI as the C cross compiler), so no stage runs under
# emulation. The runtime stage must stay in step with tests/image/Containerfile.runtime, which
# builds the same image from prebuilt binaries (tests/image/run.sh checks both agree).

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder
ARG VERSION=0.0.0-dev
ARG GIT_SHA=unknown
ARG TARGETARCH
ARG BUILDARCH

# musl-gcc compiles the C parts of dependencies (aws-lc-sys, ring, libdeflate) for a native
# musl build; zig (ziglang, driven by cargo-zigbuild) for a cross build. Pins as in
# tests/tools/image.txt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 python3-pip=23.0.1+dfsg-1 \
    && rm -rf /var/lib/apt/lists/* \
    && pip3 install --no-cache-dir --break-system-packages ziglang==0.17.1 cargo-zigbuild==0.24.1 \
    && rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl

WORKDIR /src
COPY . .

# The build script reads LANDFALL_GIT_SHA at compile time for `landfall --version`.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "${TARGETARCH}" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported platform linux/${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && if [ "${TARGETARCH}" = "${BUILDARCH}" ]; then build=build; else build=zigbuild; fi \
    && LANDFALL_VERSION="${VERSION}" LANDFALL_GIT_SHA="${GIT_SHA}" \
       cargo "${build}" --release --locked --target "${target}" \
    && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
    && cp "target/${target}/release/landfall" /rootfs/landfall

# Everything the runtime needs besides the binary: CA bundle for TLS, a passwd entry for the
# numeric user, and a world-writable /tmp for runs without a mounted volume.
RUN cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' > /rootfs/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
    && chmod 1777 /rootfs/tmp \
    && chmod 0555 /rootfs/landfall \
    && if [ "${TARGETARCH}" = "${BUILDARCH}" ]; then /rootfs/landfall --version; fi

FROM scratch AS runtime
ARG VERSION=0.0.0-dev
ARG GIT_SHA=unknown
ARG CREATED=""
LABEL org.opencontainers.image.title="landfall" \
      org.opencontainers.image.description="Declarative REST API extractor landing raw JSONL with provenance into object storage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.ref.name="${VERSION}" \
      org.opencontainers.image.source="https://github.com/landfall-dev/landfall" \
      org.opencontainers.image.url="https://github.com/landfall-dev/landfall" \
      org.opencontainers.image.documentation="https://github.com/landfall-dev/landfall/blob/main/README.md" \
      org.opencontainers.image.vendor="landfall-dev" \
      org.opencontainers.image.authors="landfall-dev maintainers (https://github.com/landfall-dev/landfall)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"
COPY --from=builder /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/landfall"]
