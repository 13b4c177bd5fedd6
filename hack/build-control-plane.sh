#!/usr/bin/env bash
# Build a real Kubernetes for the tests: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
# and kube-proxy v1.20.2 from Debian bookworm's source package (compiled with Debian's Go 1.19), etcd
# from Debian's etcd-server package, and the static `pause` binary of the pod sandbox image (there is no
# registry to pull it from). The API-server tests use the first two; hack/node.sh runs all of them as a
# real one-node cluster. Nothing in /etc is changed; apt runs with private state.
#
# Why 1.20.2: it is the newest Kubernetes whose source is reachable from the machines this project is
# developed on (Debian's archive only). Its limits (no CEL, Service SSA needs `protocol: TCP`) are
# documented in docs/operator.md; manifests are still validated against current schemas by unit tests.
#
# Output (cached; rerunning is a no-op): $K8S_DIR/{kube-apiserver,kube-controller-manager,kube-scheduler,
# kubelet,kube-proxy,etcd,pause}. Cold cost: ~9 minutes on 2 cores, ~1.5 GB peak RSS, ~3 GB of scratch space outside the repository
# (K8S_BUILD_DIR, default a fresh temp dir, removed on success).
source "$(dirname "$0")/lib.sh"

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
built=1
for b in "${BINARIES[@]}" etcd pause; do [ -x "$K8S_DIR/$b" ] || built=0; done
if [ "$built" = 1 ]; then
  log "Kubernetes $K8S_VERSION already built in $K8S_DIR"
  exit 0
fi
for tool in apt-get dpkg-deb make gcc strip; do
  command -v "$tool" >/dev/null || { log "build-control-plane: '$tool' is required (apt-get install build-essential)"; exit 1; }
done

W="${K8S_BUILD_DIR:-$(mktemp -d -t vif-k8s-build.XXXXXX)}"
log "building Kubernetes $K8S_VERSION (${BINARIES[*]}) in $W (~9 min)"
# A failed build leaves no half-filled scratch folder behind (unless the caller chose the folder).
[ -n "${K8S_BUILD_DIR:-}" ] || trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT
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
  # CGO_ENABLED=0 for the kubelet too: a pure-Go kubelet talks CRI to containerd, no cgo feature needed.
  cd "$SRC" && make WHAT="${BINARIES[*]/#/cmd/}" KUBE_BUILD_PLATFORMS=linux/amd64 GOLDFLAGS="-s -w"
)
# The pod sandbox ("pause") binary, for the image hack/build-images.sh packs.
gcc -Os -static -DVERSION=v3.2-local -o "$W/pause" "$SRC/build/pause/linux/pause.c"
strip "$W/pause"

# Install into a fresh folder and rename it into place: a half-copied cache never counts as built.
rm -rf "$K8S_DIR.partial"
mkdir -p "$K8S_DIR.partial"
for b in "${BINARIES[@]}"; do install -m 0755 "$SRC/_output/bin/$b" "$K8S_DIR.partial/"; done
install -m 0755 "$W/root/usr/bin/etcd" "$W/pause" "$K8S_DIR.partial/"
rm -rf "$K8S_DIR"
mv "$K8S_DIR.partial" "$K8S_DIR"
log "Kubernetes $K8S_VERSION ready in $K8S_DIR"
