#!/usr/bin/env bash
# README command 2 (and what CI runs): set up everything the tests need, cached outside the clone,
# then lint and run the whole suite against real parts (vLLM engine, kube-apiserver, helm, promtool, and a
# real one-node Kubernetes running the images built from our Dockerfiles).
# Extra arguments go to pytest (e.g. hack/test.sh tests/runtime -k chat).
source "$(dirname "$0")/lib.sh"
"$ROOT/hack/setup-venv.sh"
"$ROOT/hack/fetch-models.sh" >/dev/null
"$ROOT/hack/build-control-plane.sh"
VIF_HELM="$("$ROOT/hack/install-helm.sh")"
VIF_PROMTOOL="$("$ROOT/hack/install-promtool.sh")"
# The images of our Dockerfiles, for the e2e tests on a real node (hack/node.sh, started by the tests).
VIF_NODE_IMAGES="$("$ROOT/hack/build-images.sh" | paste -sd: -)"

export VIF_TINY_MODEL="$TINY_DIR" VIF_SMOLLM2_MODEL="$SMOLLM2_DIR" VIF_K8S_BIN="$K8S_DIR" VIF_HELM VIF_PROMTOOL \
  VIF_NODE_IMAGES
# Every prerequisite was prepared above, so a test that would skip for lack of one fails instead.
export VIF_REQUIRE_ALL=1
cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
log "pytest"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra --durations=25 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  log "pytest collected no tests: failing"
  exit 1
fi
exit "$rc"
