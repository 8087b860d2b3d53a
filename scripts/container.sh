#!/usr/bin/env bash
# The container engine and the project image, for `make podman` / `make image` and tests/pipeline/test_image.py.
#
#   scripts/container.sh setup    engine ready (prints "docker" or "podman"); idempotent
#   scripts/container.sh build    setup, then build $IMAGE (default vidpred:0.1.0) from the Dockerfile
#   scripts/container.sh base     the base image build would use (made if needed)
#
# Docker is used when its daemon answers (`docker info`); a docker CLI without a daemon does not count.
# Otherwise podman (Debian's podman 4.3, see ../shared/reference/CONTAINER-NOTES.md), installed from apt with
# runc and debootstrap when missing. /etc/containers/containers.conf is written only when a test container
# does not start without it and no such file exists (default ulimits off, runc, cgroupfs: podman's defaults
# fail on hybrid-cgroup kernels and where RLIMIT_NOFILE cannot be raised).
#
# BASE_IMAGE (build argument of the Dockerfile, default python:3.11-slim): taken from the environment when
# set; with Docker, python:3.11-slim; with podman, python:3.11-slim when it is present or can be pulled, else
# a Debian bookworm base made from packages (debootstrap, the host's apt mirror) and imported once as
# $DEBIAN_BASE.
#
# Under podman the build also mounts, read-only, the host's pip settings (`pip config list`, written as
# /mnt/host/pip.conf, the build's PIP_CONFIG_FILE) and every local file or folder they name (CA bundle, wheel
# folders, file:// indexes, constraints) under /mnt/host, so installing the lock reads local wheels. Their
# contents are in no layer (buildah leaves empty mount points) and the cache key of the lock layer does not
# depend on them (podman caches a step by its instruction and the constant build argument).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-vidpred:0.1.0}"
DEBIAN_BASE="${DEBIAN_BASE:-localhost/vidpred-debian:bookworm}"
PY_SLIM="docker.io/library/python:3.11-slim"
CONF=/etc/containers/containers.conf

say() { echo "container.sh: $*" >&2; }
die() { echo "error: $*" >&2; exit 2; }

docker_works() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

engine() {
  if [ -n "${CONTAINER_ENGINE:-}" ]; then echo "$CONTAINER_ENGINE"
  elif docker_works; then echo docker
  else echo podman; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "podman is needed (no Docker daemon answers): install ${missing[*]} (apt-get, as root)"
  say "installing ${missing[*]} from apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

have_image() { podman image exists "$1" 2>/dev/null; }

debian_mirror() {  # the host's Debian mirror (deb822 .sources or a sources.list line), else deb.debian.org
  local m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

make_debian_base() {
  apt_install debootstrap
  local rootfs; rootfs=$(mktemp -d /var/tmp/vidpred-rootfs.XXXXXX)
  say "making $DEBIAN_BASE with debootstrap (minbase bookworm, $(debian_mirror))"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >/var/tmp/vidpred-debootstrap.log 2>&1; then
    rm -rf "$rootfs"; die "debootstrap failed (log: /var/tmp/vidpred-debootstrap.log)"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$DEBIAN_BASE" >/dev/null
  rm -rf "$rootfs"
}

base_image() {
  if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; return; fi
  if [ "$(engine)" = docker ]; then echo python:3.11-slim; return; fi
  if have_image "$PY_SLIM"; then echo "$PY_SLIM"; return; fi
  if have_image "$DEBIAN_BASE"; then echo "$DEBIAN_BASE"; return; fi
  if timeout 120 podman pull -q "$PY_SLIM" >/dev/null 2>&1; then echo "$PY_SLIM"; return; fi
  make_debian_base
  echo "$DEBIAN_BASE"
}

probe() { podman run --rm --network host "$1" true >/dev/null 2>&1; }

setup() {
  local e; e=$(engine)
  if [ "$e" = podman ]; then
    apt_install podman runc
    local base; base=$(base_image)
    if ! probe "$base"; then
      [ -e "$CONF" ] && die "podman cannot start a container with $CONF as it is (try: podman run --rm $base true)"
      say "writing $CONF (podman's defaults cannot start a container here)"
      mkdir -p "$(dirname "$CONF")"
      cat >"$CONF" <<'EOF'
# written by vidpred scripts/container.sh: podman's defaults cannot start a container on this machine
[containers]
default_ulimits = []        # crun/runc cannot raise RLIMIT_NOFILE / RLIMIT_NPROC here

[engine]
runtime = "runc"            # crun 1.8 refuses hybrid cgroup layouts
cgroup_manager = "cgroupfs"
EOF
      probe "$base" || die "podman still cannot start a container (try: podman run --rm $base true)"
    fi
  fi
  echo "$e"
}

# pip settings for the build (podman): writes $1 (the build's PIP_CONFIG_FILE: the host's `pip config list`,
# environment entries first) and prints a "-v" mount per local path it names, remapped under /mnt/host
pip_mounts() {
  local py="$ROOT/.venv/bin/python"; [ -x "$py" ] || py=python3
  "$py" - "$1" <<'PY'
import ast, configparser, os, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
conf, mounts = configparser.ConfigParser(interpolation=None), []
for line in sorted(listed.splitlines(), key=lambda l: not l.startswith(":env:.")):  # the environment wins
    name, _, value = line.partition("=")
    section, _, key = name.rpartition(".")
    section = "global" if section == ":env:" else section
    if not conf.has_section(section):
        conf.add_section(section)
    if conf.has_option(section, key):
        continue
    words = []
    for word in ast.literal_eval(value).split():
        path = word.removeprefix("file://")
        if path.startswith("/") and os.path.exists(path):
            # a file:// index links to its files relatively (../../files/…): mount the folder holding it
            mounts.append(os.path.dirname(path.rstrip("/")) if word.startswith("file://") else path)
            word = word.replace(path, "/mnt/host" + path, 1)
        words.append(word)
    conf.set(section, key, " ".join(words))
with open(sys.argv[1], "w") as f:
    conf.write(f)
for path in dict.fromkeys(mounts):
    print("-v")
    print(f"{path}:/mnt/host{path}:ro")
PY
}

build() {
  local e base; e=$(setup); base=$(base_image)
  local args=(build --build-arg "BASE_IMAGE=$base" -t "$IMAGE" -f "$ROOT/Dockerfile")
  if [ "$e" = podman ]; then
    BUILD_TMP=$(mktemp -d); trap 'rm -rf "$BUILD_TMP"' EXIT
    local tmp=$BUILD_TMP
    mapfile -t mounts < <(pip_mounts "$tmp/pip.conf")
    args+=(--network host --layers --build-arg PIP_CONFIG_FILE=/mnt/host/pip.conf
           -v "$tmp/pip.conf:/mnt/host/pip.conf:ro" "${mounts[@]}")
  fi
  say "$e ${args[*]} $ROOT"
  "$e" "${args[@]}" "$ROOT"
  # dangling images of earlier vidpred builds (the cached layers stay: they are parents of the tagged image)
  "$e" image prune -f --filter label=org.opencontainers.image.title=vidpred >/dev/null || true
}

case "${1:-build}" in
  setup) setup ;;
  base) setup >/dev/null; base_image ;;
  build) build ;;
  *) die "usage: scripts/container.sh [setup|build|base]" ;;
esac
