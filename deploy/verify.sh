#!/usr/bin/env bash
# Checks the systemd units in deploy/systemd with `systemd-analyze verify`. PID 1 need not be
# systemd: the units are verified inside a scratch root that holds the host's system units, the env
# files and stub binaries at /usr/local/bin (verify insists that ExecStart= is executable).
# Fails on any warning.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v systemd-analyze >/dev/null 2>&1 || {
    echo "error: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/lib/systemd" "$root/etc/systemd/system" "$root/etc/kubernetes/env" "$root/usr/local/bin"
cp -a /lib/systemd/system "$root/lib/systemd/"
cp "$here"/env/*.env "$root/etc/kubernetes/env/"
cp "$here"/systemd/*.service "$root/etc/systemd/system/"
for unit in "$here"/systemd/*.service; do
    bin=$(sed -n 's|^ExecStart=\([^ ]*\).*|\1|p' "$unit")
    printf '#!/bin/sh\n' >"$root$bin"
    chmod +x "$root$bin"
done

failed=0
for unit in "$here"/systemd/*.service; do
    name=$(basename "$unit")
    out=$(systemd-analyze verify --root="$root" "/etc/systemd/system/$name" 2>&1) || failed=1
    if [[ -n $out ]]; then
        printf '%s:\n%s\n' "$name" "$out" >&2
        failed=1
    else
        printf 'ok: %s\n' "$name"
    fi
done
exit "$failed"
