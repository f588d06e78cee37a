# syntax=docker/dockerfile:1
# Switchyard: a multi-stage build. The first stage compiles a release binary (rdkafka's
# bundled librdkafka needs the C toolchain of the full Rust image); the second is Debian
# slim with that one binary, run as a non-root user, its data in the /data volume.
# Needs BuildKit (the default of Docker 23+ and `docker compose`) for the cache mounts.

# At least the highest `rust_version` in Cargo.lock (1.94.1, the aws-* crates; tests/toolchain.rs
# checks it). 1.95 is the toolchain the image is built and tested with (scripts/image.sh).
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
# The registry and target caches survive between builds; the binary is copied out of the
# cache mount, which is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
    && cp target/release/switchyard /usr/local/bin/switchyard

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid switchyard --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin switchyard \
    && mkdir -p /data \
    && chown switchyard:switchyard /data
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
# Listen on every interface inside the container; keep the log, cursors and the generated
# API key in the volume.
ENV SWITCHYARD_SERVER__LISTEN=0.0.0.0:8080 \
    SWITCHYARD_SERVER__DATA_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# SIGTERM: stop accepting, finish or hand back in-flight work, exit 0.
STOPSIGNAL SIGTERM
# The image has no curl: the binary probes itself (/health on server.listen).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["switchyard", "health"]
ENTRYPOINT ["switchyard"]
CMD ["serve"]
