#!/usr/bin/env bash
# A real one-node Kubernetes for the end-to-end tests and for trying the operator by hand: etcd,
# kube-apiserver, kube-controller-manager (all controllers), kube-scheduler, kubelet and kube-proxy
# (iptables) v1.20.2 (hack/build-control-plane.sh) on Debian's containerd, runc and CNI plugins.
#
#   hack/node.sh start DIR [IMAGE.tar ...]   fresh cluster in DIR, images imported; waits for node Ready
#   KUBECONFIG=DIR/kubeconfig kubectl|helm   from the host, through 127.0.0.1:$NODE_API_PORT (default 26443)
#   hack/node.sh exec DIR CMD...             run CMD inside the node's network namespace (curl a ClusterIP)
#   hack/node.sh import DIR IMAGE.tar ...    import more images into the running node's containerd
#   hack/node.sh stop DIR                    kill the node; removes its netns, cgroups and mounts
#
# Needs root and Linux with cgroup v1 (what these machines have). Isolation: everything runs in network
# namespace $NODE_NETNS (default vif-node) that has NO route out, and in its own PID and mount namespaces,
# so `stop` is one kill and every mount dies with the node. Pod and Service addresses exist only in that
# namespace. Nothing in the host's network namespace changes (no iptables rules, no interfaces).
#
# Traps of these machines, each handled below: no CAP_SYS_RESOURCE (containerd must not lower
# oom_score_adj), no "dummy" link driver (a veth pair carries the node IP), `ip netns exec` empties
# /sys/fs/cgroup (nsenter + a fresh sysfs instead), kubelet 1.20 writes host-global sysctls (it is shown
# private copies) and hard-codes /var/log/pods, containerd 1.6 hard-codes /var/run/netns and
# /run/containerd/s (private mounts), no CoreDNS in Debian (dnsmasq fed with Service names), the kubelet's
# cgroup root must exist beforehand with its cpuset seeded, and a new namespace refuses pods until its
# default ServiceAccount exists (tests wait for it).
#
# Measured on 2 cores: start -> node Ready ~25 s (plus ~50 s to import the 3 GB CPU runtime image);
# idle ~760 MB RSS; stop < 2 s.
source "$(dirname "$0")/lib.sh"
SELF="$ROOT/hack/node.sh"
BIN="${VIF_K8S_BIN:-$K8S_DIR}"
NS="${NODE_NETNS:-vif-node}"
NODE="${NODE_NAME:-vif-node}"
NODE_IP=10.200.0.1
POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/24
API_PORT="${NODE_API_PORT:-26443}"
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat dnsmasq-base openssl curl)

wait_until() {  # wait_until SECONDS WHAT CMD...: a hang guard, not a speed assertion
  local n="$1" what="$2" i
  shift 2
  for ((i = 0; i < n * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  log "node: timed out after ${n}s waiting for $what (logs: $D/logs/)"
  return 1
}

require() {
  [ "$(id -u)" = 0 ] || { log "node: must run as root (network, PID and mount namespaces)"; exit 1; }
  local b missing=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd; do
    [ -x "$BIN/$b" ] || { log "node: $BIN/$b missing: run hack/build-control-plane.sh"; exit 1; }
  done
  for b in "${PACKAGES[@]}"; do dpkg -s "$b" >/dev/null 2>&1 || missing+=("$b"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "node: installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  for b in ip nsenter unshare setsid; do
    command -v "$b" >/dev/null || { log "node: '$b' is required (iproute2, util-linux)"; exit 1; }
  done
}

api() { curl -sf --cacert "$D/pki/ca.crt" -H "Authorization: Bearer $(cat "$D/pki/token")" "https://127.0.0.1:$API_PORT$1"; }

write_pki() {
  [ -f "$D/pki/ca.crt" ] && return 0
  local t="$D/pki.partial"
  rm -rf "$t" && mkdir -p "$t"
  (
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=vif-node-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    # Go ignores the CN: every name or IP a client dials must be a SAN (10.96.0.1: the kubernetes Service).
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' "$NODE_IP" > san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile san.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    openssl rand -hex 16 > token
    chmod 600 ./*.key token
  )
  mv "$t" "$D/pki"
}

write_config() {
  mkdir -p "$D"/{logs,pids,varlog,kubelet,runc,mnt/cg,cni/net.d,cni/ipam,containerd/opt,dns}
  write_pki
  local token ca
  token="$(cat "$D/pki/token")"
  # One static admin token (system:masters) for the components and the tests: a test cluster only.
  echo "$token,admin,admin,system:masters" > "$D/pki/tokens.csv"
  chmod 600 "$D/pki/tokens.csv"
  ca="$(base64 -w0 < "$D/pki/ca.crt")"
  kubeconfig() {
    printf 'apiVersion: v1\nkind: Config\nclusters: [{name: vif-node, cluster: {server: "%s", certificate-authority-data: %s}}]\nusers: [{name: admin, user: {token: %s}}]\ncontexts: [{name: vif-node, context: {cluster: vif-node, user: admin, namespace: default}}]\ncurrent-context: vif-node\n' "$1" "$ca" "$token"
  }
  kubeconfig "https://127.0.0.1:$API_PORT" > "$D/kubeconfig"   # host side, through the socat bridge
  kubeconfig "https://127.0.0.1:6443" > "$D/node.kubeconfig"    # inside the node's namespace
  chmod 600 "$D/kubeconfig" "$D/node.kubeconfig"
  # Pods resolve through the cluster DNS only; the node's own resolver is a closed port.
  echo "nameserver 127.0.0.1" > "$D/resolv.conf"

  cat > "$D/containerd/config.toml" <<TOML
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$D/containerd/containerd.sock"
[ttrpc]
  address = "$D/containerd/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.2"   # built locally by hack/build-images.sh: no registry
  disable_apparmor = true
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$D/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
TOML
  cat > "$D/cni/net.d/10-vif-node.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "vif-node", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$D/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
  cat > "$D/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /$NS
failSwapOn: false
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
resolvConf: $D/resolv.conf
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
# The images cannot be pulled again: never evict or garbage-collect them because of the host's disk.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
YAML
  cat > "$D/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: $NODE
clientConnection: {kubeconfig: $D/node.kubeconfig}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
YAML
}

# Cluster DNS without CoreDNS: Service names polled from the API server into a hosts folder that
# dnsmasq re-reads on change; every other name gets NXDOMAIN at once (nothing is forwarded).
DNS_POLLER='
import json, os, ssl, sys, time, urllib.request as u
d = sys.argv[1]; tok = open(d + "/pki/token").read().strip(); last = None
ctx = ssl.create_default_context(cafile=d + "/pki/ca.crt")
while True:
    try:
        req = u.Request("https://127.0.0.1:6443/api/v1/services", headers={"Authorization": "Bearer " + tok})
        items = json.load(u.urlopen(req, context=ctx, timeout=5))["items"]
        text = "".join(sorted("%s %s.%s.svc.cluster.local %s.%s.svc\n" % (s["spec"]["clusterIP"],
                       s["metadata"]["name"], s["metadata"]["namespace"], s["metadata"]["name"],
                       s["metadata"]["namespace"]) for s in items
                       if s["spec"].get("clusterIP") not in (None, "", "None")))
        if text != last:
            open(d + "/dns.tmp", "w").write(text); os.rename(d + "/dns.tmp", d + "/dns/services"); last = text
    except Exception as e:
        print("dns poller:", e, file=sys.stderr, flush=True)
    time.sleep(1)
'

# PID 1 of the node's PID namespace, inside its netns and a private (slave) mount namespace.
node_main() {
  mount --rbind /sys/fs/cgroup "$D/mnt/cg"; umount -l /sys; mount -t sysfs sysfs /sys
  mount --move "$D/mnt/cg" /sys/fs/cgroup
  mount -t tmpfs tmpfs /run/netns
  mount -t tmpfs tmpfs /run/containerd
  mount --bind "$D/varlog" /var/log
  mount --bind "$D/resolv.conf" /etc/resolv.conf
  local kv
  for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
            kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    mkdir -p "$D/mnt/$(dirname "${kv%%=*}")"; echo "${kv#*=}" > "$D/mnt/${kv%%=*}"
    mount --bind "$D/mnt/${kv%%=*}" "/proc/sys/${kv%%=*}"
  done
  sysctl -qw net.ipv4.ip_forward=1
  run() { local name="$1"; shift; "$@" > "$D/logs/$name.log" 2>&1 & }
  run containerd containerd --config "$D/containerd/config.toml"
  run etcd "$BIN/etcd" --name vif-node --data-dir "$D/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster vif-node=http://127.0.0.1:2380
  run apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --insecure-port=0 --advertise-address="$NODE_IP" \
    --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \
    --client-ca-file="$D/pki/ca.crt" --token-auth-file="$D/pki/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$D/pki/sa.pub" \
    --service-account-signing-key-file="$D/pki/sa.key" --service-cluster-ip-range="$SVC_CIDR" \
    --kubelet-preferred-address-types=InternalIP --allow-privileged=true \
    --enable-admission-plugins="${NODE_ADMISSION_PLUGINS:-NodeRestriction}"
  run api-bridge socat UNIX-LISTEN:"$D/api.sock",fork,unlink-early TCP:127.0.0.1:6443
  wait_until 90 "kube-apiserver" curl -sfk https://127.0.0.1:6443/readyz -H "Authorization: Bearer $(cat "$D/pki/token")"
  run controller-manager "$BIN/kube-controller-manager" --kubeconfig="$D/node.kubeconfig" \
    --leader-elect=false --port=0 --secure-port=0 --controllers='*' \
    --service-account-private-key-file="$D/pki/sa.key" --root-ca-file="$D/pki/ca.crt" \
    --cluster-signing-cert-file="$D/pki/ca.crt" --cluster-signing-key-file="$D/pki/ca.key" \
    --use-service-account-credentials=false
  run scheduler "$BIN/kube-scheduler" --kubeconfig="$D/node.kubeconfig" --leader-elect=false \
    --port=0 --secure-port=0
  wait_until 30 containerd test -S "$D/containerd/containerd.sock"
  run kubelet "$BIN/kubelet" --config="$D/kubelet.yaml" --kubeconfig="$D/node.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$D/containerd/containerd.sock" \
    --hostname-override="$NODE" --node-ip="$NODE_IP" --root-dir="$D/kubelet" --cert-dir="$D/kubelet/pki"
  run kube-proxy "$BIN/kube-proxy" --config="$D/kube-proxy.yaml"
  run dns-poller python3 -c "$DNS_POLLER" "$D"
  run dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --local=/#/ --bind-interfaces \
    --listen-address="$NODE_IP" --hostsdir="$D/dns" --pid-file= --user=root --log-facility=-
  wait
}

import_images() {
  local tar
  for tar in "$@"; do
    [ -f "$tar" ] || { log "node: image archive $tar not found"; return 1; }
    ctr --address "$D/containerd/containerd.sock" -n k8s.io images import "$tar" >/dev/null
  done
}

start() {
  require
  [ -e "/run/netns/$NS" ] && { log "node: netns $NS exists: hack/node.sh stop DIR first"; exit 1; }
  local t0=$SECONDS c
  # Every start is a fresh cluster; only the PKI is kept.
  rm -rf "$D"/{etcd,kubelet,containerd,cni,varlog,dns,runc,logs,mnt,pids,api.sock}
  write_config
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  # No "dummy" driver: a veth pair with BOTH ends inside the namespace carries the node IP.
  ip -n "$NS" link add node0 type veth peer name node0-peer
  ip -n "$NS" addr add "$NODE_IP/32" dev node0
  ip -n "$NS" link set node0 up
  ip -n "$NS" link set node0-peer up
  ip -n "$NS" route add "$SVC_CIDR" dev node0   # Service IPs need a route for kube-proxy's DNAT; nothing else
  for c in /sys/fs/cgroup/*/; do
    case "$c" in */unified/) continue ;; esac
    mkdir -p "$c$NS"
  done
  cat /sys/fs/cgroup/cpuset/cpuset.cpus > "/sys/fs/cgroup/cpuset/$NS/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems > "/sys/fs/cgroup/cpuset/$NS/cpuset.mems"
  mkdir -p /run/containerd /run/netns
  setsid nsenter --net="/run/netns/$NS" -- unshare --pid --fork --kill-child --mount --propagation slave \
    --mount-proc -- env VIF_K8S_BIN="$BIN" NODE_NETNS="$NS" NODE_ADMISSION_PLUGINS="${NODE_ADMISSION_PLUGINS:-}" \
    "$SELF" _node "$D" > "$D/logs/node.log" 2>&1 < /dev/null &
  echo $! > "$D/pids/node.pid"
  setsid socat TCP-LISTEN:"$API_PORT",bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:"$D/api.sock" \
    > "$D/logs/host-bridge.log" 2>&1 < /dev/null &
  echo $! > "$D/pids/host-bridge.pid"
  if ! wait_until 120 "the API server (host side)" api /readyz; then stop; exit 1; fi
  wait_until 30 containerd test -S "$D/containerd/containerd.sock" || { stop; exit 1; }
  import_images "$@" || { stop; exit 1; }
  log "node: imported $# image archive(s) after $((SECONDS - t0))s"
  node_ready() {
    api "/api/v1/nodes/$NODE" | python3 -c 'import json,sys; c={x["type"]:x["status"] for x in json.load(sys.stdin)["status"]["conditions"]}; sys.exit(c.get("Ready")!="True")'
  }
  wait_until 180 "node Ready" node_ready || { stop; exit 1; }
  wait_until 60 "the default ServiceAccount" sh -c "curl -sf --cacert '$D/pki/ca.crt' -H 'Authorization: Bearer $(cat "$D/pki/token")' https://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/default | grep -q '\"secrets\"'" \
    || { stop; exit 1; }
  log "node: $NODE Ready after $((SECONDS - t0))s; export KUBECONFIG=$D/kubeconfig"
}

stop() {
  local pid c i
  alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }
  # SIGKILL to the node's process group: unshare's death kills the PID namespace's init (--kill-child),
  # and the kernel then kills everything in it (containers, shims, containerd, kubelet, etcd, ...).
  if [ -f "$D/pids/node.pid" ]; then
    pid="$(cat "$D/pids/node.pid")"
    kill -KILL -- -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
  fi
  if [ -f "$D/pids/host-bridge.pid" ]; then
    pid="$(cat "$D/pids/host-bridge.pid")"
    kill -TERM -- -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  for i in 1 2 3 4 5 6 7 8 9 10; do   # killed tasks leave their cgroups asynchronously
    for c in /sys/fs/cgroup/*/"$NS"; do
      [ -d "$c" ] && { find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
    done
    compgen -G "/sys/fs/cgroup/*/$NS" >/dev/null || break
    sleep 0.5
  done
  rmdir /run/containerd 2>/dev/null || true
  rm -f "$D"/pids/*.pid "$D/api.sock"
  if compgen -G "/sys/fs/cgroup/*/$NS" >/dev/null || [ -e "/run/netns/$NS" ]; then
    log "node: stopped, but cgroups or the netns of $NS are still there"
    return 1
  fi
  log "node: stopped; state kept in $D"
}

usage() { echo "usage: $0 start DIR [IMAGE.tar...] | exec DIR CMD... | import DIR IMAGE.tar... | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd="$1"
case "$cmd" in
  start) mkdir -p "$2" ;;
  _node) ;;
  *) [ -d "$2" ] || { log "node: $2 is not a node folder"; exit 1; } ;;
esac
D="$(cd "$2" && pwd)"
shift 2
case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  _node) node_main ;;
  import) import_images "$@" ;;
  exec) exec nsenter --net="/run/netns/$NS" -- "$@" ;;
  *) usage ;;
esac
