#!/usr/bin/env bash
# Builds the project's Dockerfile, unchanged, with podman, and tags the result
# localhost/switchyard:local (the `image:` docker-compose.yml gives the service).
#
# On these machines no Docker engine runs and no registry image can be pulled, so the two
# base images the Dockerfile names are made here, once, and kept in podman's storage:
#   docker.io/library/debian:bookworm-slim      debootstrap --variant=minbase bookworm
#   docker.io/library/rust:$RUST-bookworm       the same plus a C toolchain (rdkafka's
#                                               bundled librdkafka, aws-lc, mimalloc) and this
#                                               machine's own Rust toolchain ($RUST = the
#                                               Dockerfile's ARG RUST_VERSION, which must
#                                               match that toolchain)
# Each carries a label with a hash of what went into it; a matching image is reused.
# The project build itself is incremental: podman honours the Dockerfile's
# `RUN --mount=type=cache` (cargo registry and target/), so a rebuild after a source change
# recompiles only what changed.
#
# Installs podman, runc and debootstrap (Debian's packages) when missing, and podman-compose
# (PyPI, pinned) into .venv. podman runs with scripts/podman/{containers,storage}.conf:
# vfs storage, runc, no default rlimits (see those files). Idempotent; prints the
# environment podman needs (eval it, as scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

IMAGE="${SWITCHYARD_IMAGE:-localhost/switchyard:local}"
PODMAN_COMPOSE_VERSION=1.5.0
export CONTAINERS_CONF="$root/scripts/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$root/scripts/podman/storage.conf"
work="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/images"

# shellcheck source=scripts/apt.sh
. scripts/apt.sh  # the working directory is the repository root (cd above)

apt_install podman runc debootstrap python3-venv  # python3-venv: the venv below needs ensurepip
command -v podman >/dev/null || die "podman is not installed (apt-get install podman)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

# podman-compose, for tests/container.rs (docker-compose.yml started with podman).
if [ ! -x .venv/bin/pip ]; then  # pip: a venv made without python3-venv has none
  log "creating .venv"
  python3 -m venv --clear .venv
fi
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("podman-compose"))' 2>/dev/null)" != "$PODMAN_COMPOSE_VERSION" ]; then
  log "installing podman-compose==$PODMAN_COMPOSE_VERSION into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
fi

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list files).
debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '
      /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )bookworm( |$)/) { print uri; exit } uri = ""; suites = ""; next }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { $1 = ""; suites = $0 " " }
      /^deb[[:space:]]/ { s = ($2 ~ /^\[/) ? 4 : 3; u = ($2 ~ /^\[/) ? $3 : $2; if ($s == "bookworm") { print u; exit } }
      END { if (uri != "" && suites ~ /(^| )bookworm( |$)/) print uri }' "$f" | head -n 1)
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  echo "http://deb.debian.org/debian"
}
MIRROR=$(debian_mirror)

label_of() { # image label
  podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# debootstrap --variant=minbase bookworm (plus packages) imported as one layer.
make_rootfs_image() { # tag key include-packages extra-step [--change ...]
  local tag=$1 key=$2 include=$3 extra=$4
  shift 4
  if [ "$(label_of "$tag" switchyard.image-key)" = "$key" ]; then
    log "$tag: up to date (key $key)"
    return 0
  fi
  log "making $tag from debootstrap bookworm ($MIRROR)${include:+ with $include}"
  local dir="$work/rootfs"
  rm -rf "$dir" && mkdir -p "$dir"
  local started=$SECONDS
  debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$dir" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  [ -z "$extra" ] || "$extra" "$dir"
  tar -C "$dir" -c . | podman import -q --change "LABEL switchyard.image-key=$key" "$@" - "$tag" >/dev/null
  rm -rf "$dir"
  log "$tag made in $((SECONDS - started)) s"
}

mkdir -p "$work"

# 1. debian:bookworm-slim.
BASE_TAG=docker.io/library/debian:bookworm-slim
base_key=$(printf 'minbase bookworm %s v1' "$MIRROR" | sha256sum | cut -c1-16)
make_rootfs_image "$BASE_TAG" "$base_key" "" "" --change 'CMD ["bash"]'

# 2. rust:$RUST_VERSION-bookworm, with this machine's toolchain.
RUST_VERSION=$(sed -n 's/^ARG RUST_VERSION=\([0-9.]*\).*/\1/p' Dockerfile | head -n 1)
[ -n "$RUST_VERSION" ] || die "no ARG RUST_VERSION=... in the Dockerfile"
command -v rustc >/dev/null || die "rustc not found: the Rust build image is made from this machine's toolchain"
SYSROOT=$(rustc --print sysroot)
HOST=$(rustc -vV | sed -n 's/^host: //p')
RUSTC_RELEASE=$(rustc -vV | sed -n 's/^release: //p')
case "$RUSTC_RELEASE" in
  "$RUST_VERSION"|"$RUST_VERSION".*) ;;
  *) die "the Dockerfile builds with rust:$RUST_VERSION-bookworm, but this machine's toolchain is rustc $RUSTC_RELEASE ($SYSROOT), the only one a local image can be made from; no image tagged $RUST_VERSION is made from it" ;;
esac
RUST_TAG="docker.io/library/rust:$RUST_VERSION-bookworm"
# What the build needs besides Rust: a C/C++ toolchain and make (librdkafka, aws-lc, mimalloc,
# libz), cmake, pkg-config and perl (build scripts that probe for them), ca-certificates for
# crates.io.
BUILD_PACKAGES=ca-certificates,gcc,g++,libc6-dev,make,cmake,pkg-config,zlib1g-dev,perl
TOOLCHAIN_DIR="/usr/local/rustup/toolchains/$RUSTC_RELEASE-$HOST"
add_toolchain() { # rootfs
  # The toolchain without its docs (share/): rustc finds its sysroot next to its binary.
  mkdir -p "$1$TOOLCHAIN_DIR" "$1/usr/local/cargo/bin"
  local part
  for part in bin lib libexec etc; do
    [ -e "$SYSROOT/$part" ] && cp -a "$SYSROOT/$part" "$1$TOOLCHAIN_DIR/"
  done
  "$1$TOOLCHAIN_DIR/bin/rustc" -vV >/dev/null
  # This machine's trust store: cargo in the build stage reaches crates.io through the same
  # network as the host, which may present its own CA (a TLS-inspecting proxy here).
  cp "$HOST_CA_BUNDLE" "$1/etc/ssl/certs/ca-certificates.crt"
}
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -f "$HOST_CA_BUNDLE" ] || die "no $HOST_CA_BUNDLE on this machine (apt-get install ca-certificates)"
rust_key=$(printf '%s\n' "$base_key" "$BUILD_PACKAGES" "$TOOLCHAIN_DIR" "v1" "$(sha256sum <"$HOST_CA_BUNDLE")" \
  "$(rustc -vV)" "$(cargo -V)" | sha256sum | cut -c1-16)
make_rootfs_image "$RUST_TAG" "$rust_key" "$BUILD_PACKAGES" add_toolchain \
  --change "ENV RUSTUP_HOME=/usr/local/rustup" \
  --change "ENV CARGO_HOME=/usr/local/cargo" \
  --change "ENV RUST_VERSION=$RUSTC_RELEASE" \
  --change "ENV PATH=/usr/local/cargo/bin:$TOOLCHAIN_DIR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'CMD ["bash"]'

# 3. The project's Dockerfile, as it is. --format docker: the OCI format has no HEALTHCHECK.
# The build stage is tagged too (same steps, so the second build reuses it): its layers are
# the cache for the next run, which `image prune` would otherwise drop as dangling.
# nice: the suite and other builds share the cores.
BUILD_STAGE_TAG=localhost/switchyard-build-stage:cache
log "podman build -t $IMAGE (Dockerfile unchanged; cache mounts keep it incremental)"
started=$SECONDS
: >"$work/build.log"
for target in build ""; do
  tag=$IMAGE
  [ -n "$target" ] && tag=$BUILD_STAGE_TAG
  nice -n 10 podman build --network host --layers --format docker ${target:+--target "$target"} \
    -t "$tag" -f Dockerfile . >>"$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; die "podman build failed (log: $work/build.log)"; }
done
log "built $IMAGE in $((SECONDS - started)) s (log: $work/build.log)"
# vfs keeps every layer in full: drop the dangling ones earlier builds left behind.
podman image prune -f >/dev/null 2>&1 || true

echo "export CONTAINERS_CONF=$CONTAINERS_CONF"
echo "export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
echo "export SWITCHYARD_TEST_IMAGE=$IMAGE"
echo "export SWITCHYARD_TEST_PODMAN_COMPOSE=$root/.venv/bin/podman-compose"
