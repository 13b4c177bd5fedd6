#!/usr/bin/env bash
# Build the project's images without a registry or a Docker engine, as docker-archive tars that
# `ctr -n k8s.io images import` and `podman load` / `docker load` take:
#   pause     localhost/pause:3.2                  the pod sandbox image, from $K8S_DIR/pause
#                                                  (hack/build-control-plane.sh compiles it)
#   operator  vllm-inference-operator:0.1.0        Dockerfile.operator
#   runtime   vllm-inference-runtime:0.1.0-cpu     Dockerfile.runtime, VARIANT=cpu, EMBED_MODEL=smollm2
# Usage: hack/build-images.sh [pause|operator|runtime ...]   (default: all three)
# Prints the tar paths on stdout, one per line, in the order asked (pause, operator, runtime);
# logs go to stderr. Needs root (podman's storage, debootstrap) and installs podman, umoci, skopeo and
# debootstrap from Debian if they are missing.
#
# The Dockerfiles are built exactly as users build them, by Debian's podman (daemonless), with one
# build argument: PYTHON_IMAGE names a base image made here from Debian's archive (debootstrap minbase
# bookworm + Debian's Python 3.11 in /usr/bin, pip, venv, Python.h, CA certificates), the offline
# stand-in for the default python:3.11.14-slim-bookworm. It keeps its own local name instead of being
# tagged as the real image: it is not that image (Python 3.11.2 in /usr/bin, not 3.11.14 in
# /usr/local), and anything that later reads a tag should not be misled.
# pip inside the builds reaches PyPI through the host's network with the host's CA bundle; the torch
# `+cpu` wheel comes from a flat wheel folder named by pip's find-links (or TORCH_WHEELS=DIR), mounted
# as the `torch-wheels` build context, else from TORCH_CPU_INDEX=<PyTorch CPU wheel index URL>.
#
# Cached under $CACHE/images/ by a content hash of the Dockerfile, every file of the build context
# (after .dockerignore), the base image's digest and the build arguments: an unchanged tree costs
# ~1 s. podman's own storage (layer cache) is $CACHE/images/podman. Tars are written under a temporary
# name and renamed; older tars of the same image are removed once a new one is in place.
#
# Measured here (2 cores shared with other work): cold, all three 6m05s (debootstrap ~1.5 min,
# operator 35 s, runtime 265 s of which the pip layer ~3 min, skopeo writing the 3.1 GB tar ~40 s);
# warm (nothing changed) 1.2 s. Any change to the runtime's build context (README.md is the package
# readme, so it counts) re-runs the pip layer. Sizes: pause 0.7 MB, base 206 MB, operator 393 MB,
# runtime 3.1 GB (base 206 MB + g++/libnuma 340 MB + venv 2.46 GB + SmolLM2 273 MB).
# Running the images with podman here needs --ulimit nofile=20000:20000 --ulimit nproc=4096:4096
# (podman's defaults exceed what this machine lets a process set) and --shm-size 1g for vLLM's CPU
# build, e.g. `podman run --rm --network=none ... vllm-inference-runtime:0.1.0-cpu --help`.
#
# Image names: the tars carry `vllm-inference-operator:0.1.0` with no registry host. containerd's
# import normalises such a name like any Docker client (to the default registry's `library/` path),
# and so does the kubelet for `image: vllm-inference-runtime:0.1.0-cpu`, so IfNotPresent finds the
# imported image without a pull. (podman would save its own `localhost/` names, which a pod spec
# without that prefix does not match: the tars are written by skopeo with the plain names.)
source "$(dirname "$0")/lib.sh"

IMAGES="$CACHE/images"
KEY_VERSION=2                               # bump when this script changes how images are built
BASE_VERSION=2                              # bump when it changes what goes into the base image
PAUSE_REF="localhost/pause:3.2"
OPERATOR_REF="vllm-inference-operator:0.1.0"
RUNTIME_REF="vllm-inference-runtime:0.1.0-cpu"
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,libpython3.11-dev,ca-certificates
BASE_REF="localhost/debian-python:3.11-$BASE_SUITE"
PAUSE_BIN="$K8S_DIR/pause"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
WHAT=("$@")
[ ${#WHAT[@]} -gt 0 ] || WHAT=(pause operator runtime)
for w in "${WHAT[@]}"; do
  case "$w" in pause | operator | runtime) ;; *) log "build-images: unknown image '$w' (pause, operator, runtime)"; exit 2 ;; esac
done

# --- tools -------------------------------------------------------------------------------------
# runc: Debian's podman defaults to crun, which refuses this machine's hybrid cgroup layout
# ("cgroups in hybrid mode not supported").
PKGS=(podman runc umoci skopeo debootstrap)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "build-images: needs ${missing[*]} (as root: apt-get install --no-install-recommends ${missing[*]})"
    exit 1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  log "build-images: run as root (podman's storage and debootstrap need it)"
  exit 1
fi
for tool in podman runc umoci skopeo debootstrap sha256sum flock; do
  command -v "$tool" >/dev/null || { log "build-images: '$tool' not found on PATH"; exit 1; }
done

mkdir -p "$IMAGES"
# One build at a time per cache (several checkouts share it); podman's storage has its own locks.
exec 9>"$IMAGES/.lock"
flock 9

# Private storage; cgroupfs and a file event log because there is no systemd/journald here; runc with
# its state under the cache too.
STORE_ROOT="$IMAGES/podman/root" STORE_RUN="$IMAGES/podman/run"
PODMAN=(podman --root "$STORE_ROOT" --runroot "$STORE_RUN" --storage-driver overlay
        --cgroup-manager cgroupfs --events-backend file --tmpdir "$IMAGES/podman/tmp"
        --runtime runc --runtime-flag "root=$IMAGES/podman/runc")
STORAGE="containers-storage:[overlay@$STORE_ROOT+$STORE_RUN]"
mkdir -p "$IMAGES/podman/tmp" "$IMAGES/podman/runc"

# Temporary files of this run; removed on any exit, so a failed build leaves no half-written tar.
SCRATCH="$(mktemp -d -p "$IMAGES" .build.XXXXXX)"
trap 'rm -rf "$SCRATCH"' EXIT

# --- helpers -----------------------------------------------------------------------------------
# The machine's own Debian mirror (deb822 or one-line sources), for debootstrap.
debian_mirror() {
  {
    grep -hsm1 '^URIs:' /etc/apt/sources.list.d/*.sources || true
    grep -hsm1 -E '^deb +http' /etc/apt/sources.list || true
  } | awk '{print $2; exit}'
}

# Hash of a build context as Docker sends it: every file not excluded by .dockerignore (last
# matching pattern wins; a pattern matching a folder covers what is below it), plus the Dockerfile.
context_hash() {  # context_hash DOCKERFILE
  "$PY" - "$ROOT" "$1" <<'EOF'
import hashlib, os, re, sys

root, dockerfile = sys.argv[1], sys.argv[2]

def regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)

rules = []
ignore = os.path.join(root, ".dockerignore")
for line in open(ignore).read().splitlines() if os.path.exists(ignore) else []:
    line = line.strip()
    if line and not line.startswith("#"):
        negate = line.startswith("!")
        rules.append((negate, regex(os.path.normpath(line.lstrip("!")).lstrip("/"))))

def excluded(rel):
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, rx in rules:
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result

digest = hashlib.sha256()
digest.update(b"dockerfile\0" + open(dockerfile, "rb").read())
for parent, folders, files in os.walk(root):
    folders[:] = sorted(f for f in folders if f != ".git")
    for name in sorted(files):
        path = os.path.join(parent, name)
        rel = os.path.relpath(path, root)
        if os.path.isfile(path) and not excluded(rel):
            mode = "x" if os.access(path, os.X_OK) else "-"
            digest.update(f"\0{rel}\0{mode}\0".encode() + hashlib.sha256(open(path, "rb").read()).digest())
print(digest.hexdigest())
EOF
}

# pack ROOTFS OUT.tar REF CMD...: a folder as a one-layer image, written as a docker-archive tar.
pack() {
  local rootfs="$1" out="$2" ref="$3"
  shift 3
  local oci="$SCRATCH/oci-$$" cmd=() c
  for c in "$@"; do cmd+=(--config.cmd "$c"); done
  rm -rf "$oci"
  umoci init --layout "$oci"
  umoci new --image "$oci:image"
  umoci insert --image "$oci:image" "$rootfs" /
  umoci config --image "$oci:image" --config.workingdir / "${cmd[@]}" \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env LANG=C.UTF-8
  skopeo copy -q "oci:$oci:image" "docker-archive:$out.partial:$ref"
  mv "$out.partial" "$out"
  rm -rf "$oci"
}

# Keep only the newest tar of an image: IMAGE-<hash>.tar files other than KEEP.
prune() {  # prune PREFIX KEEP
  local f
  for f in "$IMAGES/$1"-*.tar; do
    [ -e "$f" ] && [ "$f" != "$2" ] && rm -f "$f"
  done
  return 0
}

# --- pause -------------------------------------------------------------------------------------
pause_tar() {
  [ -x "$PAUSE_BIN" ] || { log "build-images: $PAUSE_BIN is missing: run hack/build-control-plane.sh first"; exit 1; }
  local key tar
  key="$(printf '%s\n' "$KEY_VERSION" "$PAUSE_REF" "$(sha256sum < "$PAUSE_BIN")" | sha256sum | cut -c1-16)"
  tar="$IMAGES/pause-$key.tar"
  if [ ! -f "$tar" ]; then
    log "packing $PAUSE_REF from $PAUSE_BIN"
    mkdir -p "$SCRATCH/pause"
    install -m 0755 "$PAUSE_BIN" "$SCRATCH/pause/pause"
    pack "$SCRATCH/pause" "$tar" "$PAUSE_REF" /pause
    prune pause "$tar"
  fi
  echo "$tar"
}

# --- base --------------------------------------------------------------------------------------
# Sets BASE_TAR and BASE_ID (the image ID: the digest of its config, as podman and containerd see it).
base_image() {
  local mirror key rootfs old
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || { log "build-images: no Debian mirror found in /etc/apt"; exit 1; }
  key="$(printf '%s\n' "$BASE_VERSION" "$BASE_REF" "$BASE_SUITE" "$BASE_PACKAGES" "$mirror" | sha256sum | cut -c1-16)"
  BASE_TAR="$IMAGES/debian-python-$key.tar"
  if [ ! -f "$BASE_TAR" ]; then
    rootfs="$IMAGES/debian-python-$key.rootfs"
    if [ ! -x "$rootfs/usr/bin/python3" ]; then
      log "debootstrap $BASE_SUITE (minbase + $BASE_PACKAGES) from $mirror (~1.5-2.5 min)"
      rm -rf "$rootfs.partial"
      if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs.partial" "$mirror" \
        > "$SCRATCH/debootstrap.log" 2>&1; then
        tail -20 "$SCRATCH/debootstrap.log" >&2
        rm -rf "$rootfs.partial"
        log "build-images: debootstrap failed"
        exit 1
      fi
      # What python:*-slim leaves out too: package caches, docs, man pages, locales, logs.
      rm -rf "$rootfs.partial"/var/cache/apt/archives/*.deb "$rootfs.partial"/var/lib/apt/lists/* \
        "$rootfs.partial"/usr/share/doc/* "$rootfs.partial"/usr/share/man/* \
        "$rootfs.partial"/usr/share/locale/* "$rootfs.partial"/var/log/*.log
      # Like python:*-slim, `pip install` outside a venv is allowed (no PEP 668 marker), and the
      # container runtime provides resolv.conf.
      rm -f "$rootfs.partial"/usr/lib/python3*/EXTERNALLY-MANAGED
      : > "$rootfs.partial/etc/resolv.conf"
      mv "$rootfs.partial" "$rootfs"
    fi
    log "packing $BASE_REF"
    pack "$rootfs" "$BASE_TAR" "$BASE_REF" python3
    prune debian-python "$BASE_TAR"
    for old in "$IMAGES"/debian-python-*.rootfs; do [ "$old" = "$rootfs" ] || rm -rf "$old"; done
  fi
  BASE_ID="$(archive_id "$BASE_TAR")"
}

# The image ID of a one-image docker-archive tar (its config blob is named by its sha256).
archive_id() {
  tar -xOf "$1" manifest.json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)[0]["Config"].split(".")[0])'
}

# The torch wheel folder: TORCH_WHEELS, else the first of pip's find-links folders holding a torch
# +cpu wheel for this Python. Prints nothing when there is none.
torch_wheels() {
  if [ -n "${TORCH_WHEELS:-}" ]; then
    echo "$TORCH_WHEELS"
    return
  fi
  local dir
  for dir in ${PIP_FIND_LINKS:-} $("$PY" -m pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p"); do
    dir="${dir#file://}"
    if compgen -G "$dir/torch-*+cpu-cp${PYVER/./}-*.whl" >/dev/null; then
      echo "$dir"
      return
    fi
  done
}

# build_image NAME REF DOCKERFILE KEY_EXTRA [podman build args]: prints the tar path. KEY_EXTRA stands
# for inputs that the arguments only name (e.g. the wheels of a build context).
build_image() {
  local name="$1" ref="$2" dockerfile="$3" extra="$4"
  shift 4
  local key tar ctx
  ctx="$(context_hash "$dockerfile")"
  key="$(printf '%s\n' "$KEY_VERSION" "$ref" "$ctx" "$BASE_ID" "$extra" "$@" | sha256sum | cut -c1-16)"
  tar="$IMAGES/$name-$key.tar"
  if [ -f "$tar" ]; then
    log "$ref: cached ($tar)"
    echo "$tar"
    return
  fi
  if [ "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$BASE_REF" 2>/dev/null)" != "$BASE_ID" ]; then
    log "loading $BASE_REF into podman's storage"
    "${PODMAN[@]}" load -q -i "$BASE_TAR" >/dev/null
  fi
  local ca=()
  # This network inspects TLS: pip inside the build trusts what the host trusts.
  [ -f "$CA_BUNDLE" ] && ca=(-v "$CA_BUNDLE:$CA_BUNDLE:ro")
  log "$ref: podman build -f ${dockerfile#"$ROOT"/} $*"
  local start=$SECONDS
  # --network=host: RUN steps use the host's network, as `docker build` does by default. --format docker:
  # the OCI format would drop HEALTHCHECK.
  "${PODMAN[@]}" build --format docker --pull=never --network=host --force-rm --layers "${ca[@]}" \
    --build-arg "PYTHON_IMAGE=$BASE_REF" "$@" -f "$dockerfile" -t "localhost/$ref" "$ROOT" >&2
  # skopeo, not `podman save`: the tar must name the image without podman's localhost/ prefix.
  skopeo copy -q "${STORAGE}localhost/$ref" "docker-archive:$SCRATCH/$name.tar:$ref"
  mv "$SCRATCH/$name.tar" "$tar"
  prune "$name" "$tar"
  # Untagged images of earlier builds (a 3 GB runtime each); the tagged images keep their layers.
  "${PODMAN[@]}" image prune -f >/dev/null
  log "$ref: built in $((SECONDS - start)) s, $(du -h "$tar" | cut -f1) -> $tar"
  echo "$tar"
}

# --- main --------------------------------------------------------------------------------------
for w in "${WHAT[@]}"; do
  case "$w" in
    pause) pause_tar ;;
    operator)
      base_image
      build_image operator "$OPERATOR_REF" "$ROOT/Dockerfile.operator" ""
      ;;
    runtime)
      base_image
      args=(--build-arg VARIANT=cpu --build-arg EMBED_MODEL=smollm2)
      wheels="$(torch_wheels)" extra=""
      if [ -n "$wheels" ]; then
        args+=(--build-context "torch-wheels=$wheels")
        # The wheels' names (versions) and sizes stand for their content in the cache key.
        extra="$(cd "$wheels" && stat -c '%n:%s' ./*.whl | paste -sd,)"
      elif [ -n "${TORCH_CPU_INDEX:-}" ]; then
        args+=(--build-arg "TORCH_CPU_INDEX=$TORCH_CPU_INDEX")
      else
        log "build-images: no torch +cpu wheel in pip's find-links folders; set TORCH_WHEELS=DIR or TORCH_CPU_INDEX=<PyTorch CPU wheel index URL>"
        exit 1
      fi
      build_image runtime "$RUNTIME_REF" "$ROOT/Dockerfile.runtime" "$extra" "${args[@]}"
      ;;
  esac
done
