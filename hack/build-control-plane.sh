#!/usr/bin/env bash
# Build a real Kubernetes control plane for the integration tests: kube-apiserver and
# kube-controller-manager v1.20.2 from Debian bookworm's source package (compiled with Debian's Go 1.19),
# plus etcd from Debian's etcd-server package. Nothing in /etc is changed; apt runs with private state.
#
# Why 1.20.2: it is the newest Kubernetes whose source is reachable from the machines this project is
# developed on (Debian's archive only). Its limits (no CEL, Service SSA needs `protocol: TCP`) are
# documented in docs/operator.md; manifests are still validated against current schemas by unit tests.
#
# Output (cached; rerunning is a no-op): $K8S_DIR/{kube-apiserver,kube-controller-manager,etcd}.
# Cold cost: ~5 minutes on 2 cores, ~1.5 GB peak RSS, ~3 GB of scratch space outside the repository
# (K8S_BUILD_DIR, default a fresh temp dir, removed on success).
source "$(dirname "$0")/lib.sh"

if [ -x "$K8S_DIR/kube-apiserver" ] && [ -x "$K8S_DIR/kube-controller-manager" ] && [ -x "$K8S_DIR/etcd" ]; then
  log "control plane $K8S_VERSION already built in $K8S_DIR"
  exit 0
fi

W="${K8S_BUILD_DIR:-$(mktemp -d -t vif-k8s-build.XXXXXX)}"
log "building kube-apiserver/kube-controller-manager $K8S_VERSION in $W (~5 min)"
mkdir -p "$W"/debs "$W"/root "$W"/home

private_apt "$W" src   # the machine's own Debian mirror, plus source packages
apt-get "${APT[@]}" update -qq
(cd "$W" && apt-get "${APT[@]}" source --download-only -qq kubernetes)   # 1.20.5+really1.20.2
(cd "$W/debs" && apt-get "${APT[@]}" download -qq golang-1.19-go golang-1.19-src rsync libpopt0 \
  golang-github-modern-go-reflect2-dev etcd-server)
for deb in "$W"/debs/*.deb; do dpkg-deb -x "$deb" "$W/root"; done
(cd "$W" && tar xzf kubernetes_*.orig.tar.gz)
SRC="$(ls -d "$W"/kubernetes-*/)"

# The vendored reflect2 v1.0.1 crashes under Go 1.19 on the first custom-resource write
# ("fatal error: fault ... mapiterinit"): replace it with Debian's 1.0.2.
R="$SRC/vendor/github.com/modern-go/reflect2"
rm -f "$R"/*.go "$R"/*.s
cp "$W"/root/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} "$R/"

# A plain `go build` fails (undefined: openapi.GetOpenAPIDefinitions): make generates that file first.
(
  export GOROOT="$W/root/usr/lib/go-1.19" HOME="$W/home" GOCACHE="$W/gocache" GOPROXY=off CGO_ENABLED=0 GOFLAGS=
  export LD_LIBRARY_PATH="$W/root/usr/lib/x86_64-linux-gnu" PATH="$W/root/usr/lib/go-1.19/bin:$W/root/usr/bin:$PATH"
  unset GOPATH
  cd "$SRC" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" \
    KUBE_BUILD_PLATFORMS=linux/amd64 GOLDFLAGS="-s -w"
)

mkdir -p "$K8S_DIR"
install -m 0755 "$SRC/_output/bin/kube-apiserver" "$SRC/_output/bin/kube-controller-manager" \
  "$W/root/usr/bin/etcd" "$K8S_DIR/"
if [ -z "${K8S_BUILD_DIR:-}" ]; then
  chmod -R u+w "$W" && rm -rf "$W"
fi
log "control plane ready in $K8S_DIR"
