#!/usr/bin/env bash
# Brings up a one-node cluster on this machine: its own containerd, kube-apiserver (embedded SQLite
# by default, etcd with KUBE_STORAGE=etcd), kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy and kube-dns, with state under $KUBE_LOCAL_DIR (default /tmp/kube-local).
#
#   sudo hack/local-up-cluster.sh        foreground; Ctrl-C stops everything and cleans up
#   sudo hack/local-up-cluster.sh -d     return once the node is Ready (stop with local-down-cluster.sh)
#
# Environment (besides those in hack/lib/cluster.sh):
#   KUBE_SKIP_BUILD=1       do not run cargo build (binaries from $KUBE_BIN_DIR)
#   KUBE_READY_TIMEOUT=120  seconds to wait for the apiserver and for the node to be Ready
#   KUBE_UP_ONLY=PHASE      debugging: stop after prereqs|certs|images|containerd|etcd|apiserver and
#                           leave what started running, as -d does
#   KUBE_EVICTION_HARD=...  the kubelet's --eviction-hard (default: 100Mi of memory and 1Gi of disk
#                           left; upstream's percentages would evict pods on a build machine
#                           whose disk is mostly build output)
set -euo pipefail

# shellcheck source=hack/lib/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"

DETACH=0
usage() {
    echo "usage: $0 [-d]   (-d: return once the node is Ready)" >&2
    exit 2
}
while getopts ":dh" opt; do
    case $opt in
        d) DETACH=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
(($# == 0)) || usage

READY_TIMEOUT=${KUBE_READY_TIMEOUT:-120}
EVICTION_HARD=${KUBE_EVICTION_HARD:-memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi}
UP_ONLY=${KUBE_UP_ONLY:-}
case $UP_ONLY in
    "" | prereqs | certs | images | containerd | etcd | apiserver) ;;
    *) die "KUBE_UP_ONLY=$UP_ONLY is not one of prereqs, certs, images, containerd, etcd, apiserver" ;;
esac
case $KUBE_STORAGE in
    sqlite | etcd) ;;
    *) die "KUBE_STORAGE=$KUBE_STORAGE is not sqlite or etcd" ;;
esac

# Set once something has been started: from then on a failure or a signal cleans everything up.
ARMED=0
UP_DONE=0

on_exit() {
    local rc=$?
    if ((ARMED && !UP_DONE)); then
        trap - EXIT INT TERM
        log "cleaning up"
        cleanup_cluster
    fi
    exit "$rc"
}
on_signal() {
    trap - INT TERM
    log "interrupted"
    if ((ARMED)); then
        UP_DONE=0
    fi
    exit 130
}
trap on_exit EXIT
trap on_signal INT TERM

# fail MSG [COMPONENT]: one-line error (plus the tail of the component's log), then cleanup via EXIT.
fail() {
    local msg=$1 name=${2:-}
    if [[ -n $name && -s $LOGS/$name.log ]]; then
        printf -- '--- last lines of %s ---\n' "$LOGS/$name.log" >&2
        tail -n 20 "$LOGS/$name.log" >&2
        printf -- '---\n' >&2
    fi
    printf 'error: %s\n' "$msg" >&2
    exit 1
}

# stop_here PHASE: with KUBE_UP_ONLY=PHASE, leave what runs and return like -d.
stop_here() {
    if [[ $UP_ONLY == "$1" ]]; then
        UP_DONE=1
        log "stopped after phase '$1' (KUBE_UP_ONLY); stop with: hack/local-down-cluster.sh"
        exit 0
    fi
}

# ---- prerequisites: nothing is started or changed until all of these pass -------------------------

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo hack/local-up-cluster.sh)"

# Another cluster (or a leftover of one) from this state dir still running?
for name in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$name"); then
        die "a cluster is already running from $DIR ($name pid $pid); stop it with: hack/local-down-cluster.sh"
    fi
done

# port_holder PROTO PORT: "name (pid N)" of the process listening there, or nothing.
port_holder() {
    local flag=$1 port=$2 line
    line=$(ss -H "-ln${flag}p" "sport = :$port" 2>/dev/null | head -n 1) || true
    [[ -n $line ]] || return 1
    if [[ $line =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
        echo "${BASH_REMATCH[1]} (pid ${BASH_REMATCH[2]})"
    else
        echo "an unknown process"
    fi
}
tcp_ports=("${CLUSTER_TCP_PORTS[@]}")
if [[ $KUBE_STORAGE == etcd ]]; then
    tcp_ports+=("$KUBE_ETCD_PORT" "$KUBE_ETCD_PEER_PORT")
fi
for port in "${tcp_ports[@]}"; do
    if holder=$(port_holder t "$port"); then
        die "TCP port $port is already in use by $holder; stop it (or hack/local-down-cluster.sh) and retry"
    fi
done
for port in "${CLUSTER_UDP_PORTS[@]}"; do
    if holder=$(port_holder u "$port"); then
        die "UDP port $port is already in use by $holder; stop it and retry"
    fi
done

# Kernel features.
[[ -e /proc/self/ns/net ]] || die "kernel lacks network namespaces (CONFIG_NET_NS); use a kernel with them"
if ! grep -qw overlay /proc/filesystems; then
    modprobe overlay 2>/dev/null || true
    grep -qw overlay /proc/filesystems || die "kernel lacks overlayfs (not in /proc/filesystems; try: modprobe overlay)"
fi
if ! nft list tables >/dev/null 2>&1; then
    modprobe nf_tables 2>/dev/null || true
    nft list tables >/dev/null 2>&1 || die "kernel lacks nf_tables (nft list tables fails; try: modprobe nf_tables)"
fi
if [[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    modprobe br_netfilter 2>/dev/null || true
    [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
        die "kernel lacks br_netfilter (needed for Service traffic between pods on one bridge; try: modprobe br_netfilter)"
fi

"$KUBE_ROOT/hack/install-deps.sh" || die "installing dependencies failed (see above; hack/install-deps.sh)"

if [[ -z ${KUBE_NODE_IP:-} ]]; then
    KUBE_NODE_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1)
    [[ -n $KUBE_NODE_IP ]] || die "cannot find the node IP (no IPv4 default route); set KUBE_NODE_IP"
fi
NODE_IP=$KUBE_NODE_IP
NODE_NAME=${KUBE_NODE_NAME:-$(hostname -s | tr '[:upper:]' '[:lower:]')}
[[ -n $NODE_NAME ]] || die "cannot find the host name; set KUBE_NODE_NAME"
[[ -x $UPSTREAM_KUBECTL ]] || die "$UPSTREAM_KUBECTL not found (install Debian's kubectl)"

if [[ ${KUBE_SKIP_BUILD:-0} != 1 ]]; then
    log "building (cargo build --release --workspace --bins)"
    (cd "$KUBE_ROOT" && cargo build --release --workspace --bins) ||
        die "cargo build failed (see above)"
fi
BINARIES=(kube-certs kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-dns)
for bin in "${BINARIES[@]}"; do
    [[ -x $KUBE_BIN_DIR/$bin ]] ||
        die "$KUBE_BIN_DIR/$bin not found (build with: cargo build --release --workspace --bins, or set KUBE_BIN_DIR)"
done
stop_here prereqs

# Leftovers of a crashed run (shims, mounts, netns, bridge, nft table) would confuse the new one.
cleanup_cluster
mkdir -p "$DIR" "$LOGS/pods" "$PIDS" "$CERTS"

# ---- certificates, images ------------------------------------------------------------------------

"$KUBE_BIN_DIR/kube-certs" local-cluster --dir "$DIR" --node-name "$NODE_NAME" --node-ip "$NODE_IP" \
    2>>"$LOGS/kube-certs.log" || fail "generating certificates failed" kube-certs
stop_here certs

"$KUBE_ROOT/hack/images/build.sh" "$DIR/images" >>"$LOGS/images.log" 2>&1 ||
    fail "building the test images failed (hack/images/build.sh)" images
[[ -s $DIR/images/busybox.tar ]] || fail "hack/images/build.sh did not produce $DIR/images/busybox.tar" images
stop_here images

# ---- host settings -------------------------------------------------------------------------------

sysctl -qw net.ipv4.ip_forward=1 || die "cannot set net.ipv4.ip_forward=1"
sysctl -qw net.bridge.bridge-nf-call-iptables=1 || die "cannot set net.bridge.bridge-nf-call-iptables=1"

# ---- processes -----------------------------------------------------------------------------------

# start NAME CMD...: runs CMD in its own session (no terminal signals; survives -d), stdout+stderr
# to logs/NAME.log, PID to pids/NAME.pid.
start() {
    local name=$1
    shift
    ARMED=1
    log "starting $name"
    printf '=== %s: started by local-up-cluster.sh: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOGS/$name.log"
    setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$PIDS/$name.pid"
}

# wait_for NAME TIMEOUT WHAT CMD...: polls CMD until it succeeds; fails when NAME dies or on timeout.
wait_for() {
    local name=$1 timeout=$2 what=$3 deadline
    shift 3
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        pid_of "$name" >/dev/null || fail "$name exited while waiting for $what" "$name"
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what" "$name"
        sleep 0.2
    done
}

mkdir -p "$CTRD_DIR/root" "$CTRD_DIR/state"
cat >"$CTRD_DIR/config.toml" <<TOML
# Written by hack/local-up-cluster.sh: a private containerd for this cluster.
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
# The kubelet uses containerd's own API, not CRI.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
TOML
start containerd containerd --config "$CTRD_DIR/config.toml"
wait_for containerd 30 "containerd at $CTRD_SOCK" ctr --address "$CTRD_SOCK" --timeout 2s version
stop_here containerd

APISERVER_STORAGE=(--storage-backend sqlite --sqlite-path "$DIR/apiserver/state.db")
if [[ $KUBE_STORAGE == etcd ]]; then
    mkdir -p "$DIR/etcd"
    etcd_url=http://127.0.0.1:$KUBE_ETCD_PORT
    start etcd etcd --name "$NODE_NAME" --data-dir "$DIR/etcd" \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls "http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$KUBE_ETCD_PEER_PORT" \
        --initial-cluster "$NODE_NAME=http://127.0.0.1:$KUBE_ETCD_PEER_PORT"
    wait_for etcd 30 "etcd at $etcd_url" env ETCDCTL_API=3 etcdctl --endpoints "$etcd_url" endpoint health
    APISERVER_STORAGE=(--storage-backend etcd3 --etcd-servers "$etcd_url" --etcd-prefix /registry)
fi
stop_here etcd

mkdir -p "$DIR/apiserver"
# Secrets are encrypted at rest with a key made once per cluster (kept across restarts: a new key
# would leave the stored secrets unreadable). The audit log records every request at Metadata level.
if [[ ! -s $DIR/apiserver/encryption.yaml ]]; then
    (
        umask 077
        cat >"$DIR/apiserver/encryption.yaml" <<EOF_ENC
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aescbc:
      keys:
      - name: key1
        secret: $(head -c 32 /dev/urandom | base64)
  - identity: {}
EOF_ENC
    )
fi
cat >"$DIR/apiserver/audit-policy.yaml" <<'EOF_AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
- level: Metadata
EOF_AUDIT
start kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
    --secure-port 6443 --bind-address 0.0.0.0 --advertise-address "$NODE_IP" \
    --tls-cert-file "$CERTS/apiserver.crt" --tls-private-key-file "$CERTS/apiserver.key" \
    --client-ca-file "$CERTS/ca.crt" \
    "${APISERVER_STORAGE[@]}" \
    --service-cluster-ip-range 10.96.0.0/12 --service-node-port-range 30000-32767 \
    --kubelet-client-certificate "$CERTS/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$CERTS/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$CERTS/ca.crt" \
    --service-account-key-file "$CERTS/sa.pub" --service-account-signing-key-file "$CERTS/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --encryption-provider-config "$DIR/apiserver/encryption.yaml" \
    --audit-policy-file "$DIR/apiserver/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" \
    --audit-log-maxsize 100 --audit-log-maxbackup 3
apiserver_ready() {
    [[ $(curl -sS --max-time 2 --cacert "$CERTS/ca.crt" --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" \
        https://127.0.0.1:6443/readyz) == ok ]]
}
wait_for kube-apiserver "$READY_TIMEOUT" "kube-apiserver /readyz" apiserver_ready
stop_here apiserver

start kube-controller-manager "$KUBE_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --cluster-cidr 10.244.0.0/16 --allocate-node-cidrs --node-cidr-mask-size 24 \
    --service-cluster-ip-range 10.96.0.0/12 --secure-port 10257 --controllers '*' \
    --root-ca-file "$CERTS/ca.crt"

start kube-scheduler "$KUBE_BIN_DIR/kube-scheduler" \
    --kubeconfig "$DIR/scheduler.kubeconfig" --secure-port 10259

mkdir -p "$DIR/kubelet"
start kubelet "$KUBE_BIN_DIR/kubelet" \
    --kubeconfig "$DIR/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --container-runtime-endpoint "unix://$CTRD_SOCK" \
    --root-dir "$DIR/kubelet" --pod-logs-dir "$LOGS/pods" --image-archive-dir "$DIR/images" \
    --cni-bin-dir /usr/lib/cni --cluster-dns 10.96.0.10 --cluster-domain cluster.local \
    --port 10250 --tls-cert-file "$CERTS/kubelet.crt" --tls-private-key-file "$CERTS/kubelet.key" \
    --client-ca-file "$CERTS/ca.crt" --healthz-port 10248 \
    --authentication-token-webhook --authorization-mode Webhook \
    --eviction-hard "$EVICTION_HARD"

start kube-proxy "$KUBE_BIN_DIR/kube-proxy" \
    --kubeconfig "$DIR/kube-proxy.kubeconfig" --hostname-override "$NODE_NAME" \
    --cluster-cidr 10.244.0.0/16 --service-cluster-ip-range 10.96.0.0/12 \
    --healthz-bind-address 0.0.0.0:10256 --metrics-bind-address 127.0.0.1:10249

start kube-dns "$KUBE_BIN_DIR/kube-dns" \
    --kubeconfig "$DIR/kube-dns.kubeconfig" --dns-bind-address 0.0.0.0 --dns-port 10053 \
    --advertise-address "$NODE_IP" --cluster-domain cluster.local --cluster-dns-ip 10.96.0.10

KUBECTL=("$UPSTREAM_KUBECTL" --kubeconfig "$DIR/admin.kubeconfig")

# first_dead: the first started component that is no longer running.
first_dead() {
    local name
    for name in "${COMPONENTS[@]}"; do
        [[ -f $PIDS/$name.pid ]] || continue
        pid_of "$name" >/dev/null || {
            echo "$name"
            return 0
        }
    done
    return 1
}

node_ready() {
    [[ $("${KUBECTL[@]}" --request-timeout 5s get node "$NODE_NAME" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
deadline=$((SECONDS + READY_TIMEOUT))
until node_ready; do
    if dead=$(first_dead); then
        fail "$dead exited while waiting for node $NODE_NAME to be Ready" "$dead"
    fi
    if ((SECONDS >= deadline)); then
        why=$("${KUBECTL[@]}" --request-timeout 5s get node "$NODE_NAME" \
            -o 'jsonpath={.status.conditions[?(@.type=="Ready")].message}' 2>&1 | head -c 300) || true
        fail "timed out after ${READY_TIMEOUT}s waiting for node $NODE_NAME to be Ready (${why:-node not registered})" kubelet
    fi
    sleep 0.5
done

UP_DONE=1
log "cluster is up: node $NODE_NAME ($NODE_IP) is Ready, storage $KUBE_STORAGE, state in $DIR"
echo "export KUBECONFIG=$DIR/admin.kubeconfig"

if ((DETACH)); then
    exit 0
fi

# Foreground: run until Ctrl-C/TERM, then clean up like local-down-cluster.sh.
UP_DONE=0
log "running in the foreground; Ctrl-C stops the cluster and cleans up"
reported=""
while true; do
    if dead=$(first_dead) && [[ $dead != "$reported" ]]; then
        log "warning: $dead exited; see $LOGS/$dead.log"
        reported=$dead
    fi
    sleep 1 &
    wait $! || true
done
