# syntax=docker/dockerfile:1
# landfall container image: a static musl binary on scratch.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg GIT_SHA="$(git rev-parse HEAD)" \
#     -t ghcr.io/landfall-dev/landfall:0.1.0 .
#
# The runtime stage must stay in step with tests/image/Containerfile.runtime, which builds the
# same image from a prebuilt binary (tests/image/run.sh checks both agree).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG VERSION=0.0.0-dev
ARG GIT_SHA=unknown
ARG TARGET=x86_64-unknown-linux-musl

# musl-gcc compiles the C parts of dependencies (aws-lc-sys, ring, libdeflate) for the musl target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${TARGET}"

WORKDIR /src
COPY . .

# The build script reads LANDFALL_GIT_SHA at compile time for `landfall --version`.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    LANDFALL_VERSION="${VERSION}" LANDFALL_GIT_SHA="${GIT_SHA}" \
    cargo build --release --locked --target "${TARGET}" \
    && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
    && cp "target/${TARGET}/release/landfall" /rootfs/landfall

# Everything the runtime needs besides the binary: CA bundle for TLS, a passwd entry for the
# numeric user, and a world-writable /tmp for runs without a mounted volume.
RUN cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' > /rootfs/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
    && chmod 1777 /rootfs/tmp \
    && chmod 0555 /rootfs/landfall \
    && /rootfs/landfall --version

FROM scratch AS runtime
ARG VERSION=0.0.0-dev
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="landfall" \
      org.opencontainers.image.description="Declarative REST API extractor landing raw JSONL with provenance into object storage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.source="https://github.com/landfall-dev/landfall" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/landfall"]
