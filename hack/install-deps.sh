#!/usr/bin/env bash
# Installs the Debian packages (and cargo-nextest) the cluster scripts and tests need.
# A fast no-op when everything is present; one `apt-get update` only when something is missing.
set -euo pipefail

# package:command ("-" when only dpkg can tell).
PACKAGES=(
    containerd:containerd
    runc:runc
    containernetworking-plugins:-
    nftables:nft
    busybox-static:-
    iproute2:ip
    etcd-server:etcd
    etcd-client:etcdctl
    protobuf-compiler:protoc
    make:make  # builds jemalloc (tikv-jemalloc-sys) for the control-plane binaries
    libprotobuf-dev:-
    docker-registry:docker-registry
    skopeo:skopeo
    conntrack:conntrack
    curl:curl
    procps:pgrep
    systemd:systemd-analyze
)

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

installed() {
    local pkg=${1%%:*} cmd=${1#*:}
    if [[ $cmd != - ]]; then
        command -v "$cmd" >/dev/null 2>&1 && return 0
    fi
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]]
}

missing=()
for entry in "${PACKAGES[@]}"; do
    installed "$entry" || missing+=("${entry%%:*}")
done
# The CNI plugins must be where the kubelet looks for them.
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    [[ " ${missing[*]} " == *" containernetworking-plugins "* ]] || missing+=(containernetworking-plugins)

if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]}; must run as root to install them (try: sudo $0)"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: ${missing[*]}; apt-get not found (this needs Debian 12)"
    printf 'installing: %s\n' "${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed (check network access and /etc/apt/sources.list)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed (run it by hand to see why)"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust from https://rustup.rs)"
    printf 'installing: cargo-nextest\n' >&2
    cargo install --locked cargo-nextest >/dev/null 2>&1 ||
        die "cargo install cargo-nextest failed (run it by hand to see why)"
fi
