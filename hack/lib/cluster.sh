# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Shared settings and helpers of hack/local-up-cluster.sh and hack/local-down-cluster.sh.
# Source it; it defines variables and functions and has no side effects.
#
# Settings (environment):
#   KUBE_LOCAL_DIR   cluster state directory (default /tmp/kube-local)
#   KUBE_STORAGE     sqlite (default) | etcd
#   KUBE_ETCD_PORT   etcd client port (default 2379; the peer port is the next one)
#   KUBE_NODE_NAME   node name (default: short hostname)
#   KUBE_NODE_IP     node IP (default: source address of the default route)
#   KUBE_BIN_DIR     where the binaries are (default: <repo>/target/release)
#   KUBE_CLEAN_ALL   1: local-down also removes logs, certs, kubeconfigs and images

KUBE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KUBE_LOCAL_DIR=${KUBE_LOCAL_DIR:-/tmp/kube-local}
KUBE_STORAGE=${KUBE_STORAGE:-sqlite}
KUBE_ETCD_PORT=${KUBE_ETCD_PORT:-2379}
KUBE_ETCD_PEER_PORT=$((KUBE_ETCD_PORT + 1))
KUBE_BIN_DIR=${KUBE_BIN_DIR:-${CARGO_TARGET_DIR:-$KUBE_ROOT/target}/release}
UPSTREAM_KUBECTL=${UPSTREAM_KUBECTL:-/usr/bin/kubectl}

DIR=$KUBE_LOCAL_DIR
CERTS=$DIR/certs
LOGS=$DIR/logs
PIDS=$DIR/pids
CTRD_DIR=$DIR/containerd
CTRD_SOCK=$CTRD_DIR/containerd.sock
CTRD_NAMESPACE=k8s.io

# Components in start order; stop order is the reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-dns)
# Ports each component listens on (etcd's are added when KUBE_STORAGE=etcd).
CLUSTER_TCP_PORTS=(6443 10250 10248 10257 10259 10256 10249 10053 10054)
CLUSTER_UDP_PORTS=(10053)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# pid_of NAME: the recorded PID of a component if that process is alive, else nothing.
pid_of() {
    local file=$PIDS/$1.pid pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# stop_pid PID NAME: TERM, wait up to 10 s, then KILL.
stop_pid() {
    local pid=$1 name=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not stop after TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
}

# stop_component NAME: stops the recorded process and removes its pid file.
stop_component() {
    local name=$1 pid
    if pid=$(pid_of "$name"); then
        log "stopping $name (pid $pid)"
        stop_pid "$pid" "$name"
    fi
    rm -f "$PIDS/$name.pid"
}

# shim_pids: containerd shims that belong to this cluster's containerd (their command line names our
# socket), whatever state our containerd is in.
shim_pids() {
    local pid cmdline
    for pid in $(pgrep -f 'containerd-shim' || true); do
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        [[ $cmdline == *"-address $CTRD_SOCK "* || $cmdline == *"-address $CTRD_SOCK" ]] && echo "$pid"
    done
}

# remove_containers: while our containerd answers, kill and delete every task and container in its
# namespace, so runc tears containers down properly.
remove_containers() {
    [[ -S $CTRD_SOCK ]] || return 0
    local ctr=(ctr --address "$CTRD_SOCK" --namespace "$CTRD_NAMESPACE" --timeout 5s) id
    "${ctr[@]}" version >/dev/null 2>&1 || return 0
    for id in $("${ctr[@]}" tasks list --quiet 2>/dev/null); do
        "${ctr[@]}" tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $("${ctr[@]}" tasks list --quiet 2>/dev/null); do
        "${ctr[@]}" tasks delete --force "$id" >/dev/null 2>&1 || true
    done
    for id in $("${ctr[@]}" containers list --quiet 2>/dev/null); do
        "${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true
    done
}

# kill_shims: KILL leftover shims of this cluster and the container processes under them.
kill_shims() {
    local shim child
    for shim in $(shim_pids); do
        for child in $(pgrep -P "$shim" || true); do
            kill -KILL "$child" 2>/dev/null || true
        done
        log "killing leftover shim (pid $shim)"
        kill -KILL "$shim" 2>/dev/null || true
    done
}

# delete_runc_state: runc keeps container state in /run/containerd/runc/<namespace>, outside our
# state dir and shared with other containerd instances; delete (force-killing) only the containers
# whose bundle lies under this cluster's containerd state.
delete_runc_state() {
    local root id bundle
    for root in /run/containerd/runc/*/; do
        [[ -d $root ]] || continue
        while read -r id bundle; do
            [[ $bundle == "$CTRD_DIR/"* ]] || continue
            runc --root "$root" delete --force "$id" >/dev/null 2>&1 ||
                log "warning: could not delete runc container $id"
        done < <(runc --root "$root" list 2>/dev/null | awk 'NR > 1 { print $1, $4 }')
    done
}

# remove_pod_cgroups: the kubelet puts containers under /kubepods in every hierarchy; remove the
# (now empty) cgroup directories, deepest first. Non-empty ones stay (rmdir refuses).
remove_pod_cgroups() {
    local top
    for top in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
        [[ -d $top ]] || continue
        find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    return 0
}

# unmount_under PATH: unmounts every mount point at or below PATH, deepest first.
unmount_under() {
    local base=$1 mnt
    [[ -n $base && $base != / ]] || return 0
    # Field 5 of mountinfo is the mount point (spaces escaped as \040).
    while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "warning: could not unmount $mnt"
    done < <(awk -v base="$base" '$5 == base || index($5, base "/") == 1 { print $5 }' /proc/self/mountinfo |
        sed 's/\\040/ /g' | sort -r -u)
}

# delete_netns: removes the network namespaces the kubelet created (named kube-*).
delete_netns() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^kube-/ { print $1 }'); do
        ip netns delete "$ns" 2>/dev/null || log "warning: could not delete netns $ns"
    done
}

# delete_nft_table: kube-proxy's table, through kube-proxy --cleanup when the binary is there.
delete_nft_table() {
    if [[ -x $KUBE_BIN_DIR/kube-proxy ]]; then
        timeout 30 "$KUBE_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
    fi
    if nft list table ip kube-proxy >/dev/null 2>&1; then
        nft delete table ip kube-proxy || log "warning: could not delete nft table ip kube-proxy"
    fi
}

# cleanup_cluster: everything local-down does. Idempotent; tolerates leftovers of a crashed run.
cleanup_cluster() {
    local i
    [[ -n $DIR && $DIR != / ]] || die "refusing to clean up KUBE_LOCAL_DIR='$DIR'"
    # Components first (newest first), so nothing recreates what is removed below; containerd stays
    # up until its containers are gone.
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        case ${COMPONENTS[i]} in
            containerd | etcd) ;;
            *) stop_component "${COMPONENTS[i]}" ;;
        esac
    done
    remove_containers
    stop_component containerd
    stop_component etcd
    kill_shims
    delete_runc_state
    remove_pod_cgroups
    unmount_under "$DIR"
    delete_netns
    if ip link show cni0 >/dev/null 2>&1; then
        ip link delete cni0 || log "warning: could not delete bridge cni0"
    fi
    delete_nft_table
    # Runtime state (host-local IPAM data lives under kubelet/cni); certs, kubeconfigs, images and
    # logs stay so the next start is quick and the logs can be read.
    rm -rf "$DIR/kubelet" "$CTRD_DIR/root" "$CTRD_DIR/state" "$CTRD_SOCK" "$CTRD_SOCK.ttrpc" \
        "$DIR/apiserver" "$DIR/etcd" "$PIDS"
    if [[ ${KUBE_CLEAN_ALL:-0} == 1 ]]; then
        rm -rf "$DIR"
    fi
}
