#!/usr/bin/env bash
# Stops a cluster started by hack/local-up-cluster.sh and removes what it left on the host:
# processes (by their recorded PIDs), containers and leftover shims of its containerd, mounts under
# $KUBE_LOCAL_DIR, network namespaces named kube-*, the cni0 bridge, the nft table ip kube-proxy and
# the runtime state. Logs, certificates and images stay unless KUBE_CLEAN_ALL=1.
# Idempotent, and tolerant of leftovers of a crashed run.
set -euo pipefail

# shellcheck source=hack/lib/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"

(($# == 0)) || {
    echo "usage: $0   (environment: KUBE_LOCAL_DIR, KUBE_CLEAN_ALL=1)" >&2
    exit 2
}
[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo hack/local-down-cluster.sh)"

cleanup_cluster
log "cluster in $DIR is down"
