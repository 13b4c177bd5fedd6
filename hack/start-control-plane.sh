#!/usr/bin/env bash
# Start the test control plane built by hack/build-control-plane.sh: etcd + kube-apiserver
# (+ kube-controller-manager running only the garbage-collector and namespace controllers) on 127.0.0.1,
# all state under one folder. There is no scheduler, kubelet or Deployment controller: tests write
# pod states themselves. Usage:
#   hack/start-control-plane.sh DIR      # then: export KUBECONFIG=DIR/kubeconfig; stop: hack/stop-control-plane.sh DIR
# Ports (env): ETCD_PORT (default 12379), ETCD_PEER_PORT (12380), APISERVER_PORT (16443).
# Binaries: VIF_K8S_BIN (default $K8S_DIR from hack/lib.sh). The admin token is in DIR/token; the
# server's self-signed certificate (with its CA) in DIR/certs/apiserver.crt, which the kubeconfig trusts.
source "$(dirname "$0")/lib.sh"
D="${1:?usage: $0 DIR}"
BIN="${VIF_K8S_BIN:-$K8S_DIR}"
ETCD_PORT="${ETCD_PORT:-12379}" ETCD_PEER_PORT="${ETCD_PEER_PORT:-12380}" APISERVER_PORT="${APISERVER_PORT:-16443}"
for b in etcd kube-apiserver kube-controller-manager; do
  [ -x "$BIN/$b" ] || { log "$BIN/$b missing: run hack/build-control-plane.sh"; exit 1; }
done
mkdir -p "$D/certs" "$D/etcd-data"
D="$(cd "$D" && pwd)"
[ -f "$D/sa.key" ] || {
  openssl genrsa -out "$D/sa.key" 2048 2>/dev/null
  openssl rsa -in "$D/sa.key" -pubout -out "$D/sa.pub" 2>/dev/null
}
[ -f "$D/token" ] || openssl rand -hex 16 > "$D/token"
TOKEN="$(cat "$D/token")"
echo "$TOKEN,admin,admin,system:masters" > "$D/tokens.csv"
chmod 600 "$D/token" "$D/tokens.csv" "$D/sa.key"

# setsid: each server leads its own process group, so stopping them never touches the caller.
setsid "$BIN/etcd" --name cp --data-dir "$D/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "cp=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync > "$D/etcd.log" 2>&1 < /dev/null &
echo $! > "$D/etcd.pid"
setsid "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" --insecure-port=0 \
  --cert-dir="$D/certs" --token-auth-file="$D/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$D/sa.pub" \
  --service-account-signing-key-file="$D/sa.key" --service-cluster-ip-range=10.96.0.0/24 \
  --disable-admission-plugins=ServiceAccount --allow-privileged=true > "$D/apiserver.log" 2>&1 < /dev/null &
echo $! > "$D/apiserver.pid"
cat > "$D/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$D/certs/apiserver.crt"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: test, context: {cluster: test, user: admin, namespace: default}}]
current-context: test
KC
chmod 600 "$D/kubeconfig"

ready=""
for _ in $(seq 1 120); do
  if [ "$(curl -sk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null)" = ok ]; then
    ready=1; break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  log "kube-apiserver did not become ready; last lines of $D/apiserver.log:"; tail -20 "$D/apiserver.log" >&2
  exit 1
fi
setsid "$BIN/kube-controller-manager" --kubeconfig="$D/kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
  --controllers=garbagecollector,namespace > "$D/controller-manager.log" 2>&1 < /dev/null &
echo $! > "$D/controller-manager.pid"
log "control plane ready: export KUBECONFIG=$D/kubeconfig"
