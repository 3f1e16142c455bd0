#!/usr/bin/env bash
# Static checks of the shell scripts and systemd units: `bash -n` on every script, shellcheck when it
# is installed (apt-get install shellcheck), and deploy/verify.sh (systemd-analyze verify).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t scripts < <(
    {
        find hack deploy -name '*.sh' -type f
        echo .ci/run
    } | sort
)
for s in "${scripts[@]}"; do
    bash -n "$s" || { echo "error: syntax error in $s" >&2; exit 1; }
done
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -x --severity=warning "${scripts[@]}" || { echo "error: shellcheck found problems (above)" >&2; exit 1; }
else
    echo "warning: shellcheck not installed; skipped (apt-get install shellcheck)" >&2
fi
deploy/verify.sh >/dev/null || { echo "error: systemd unit verification failed (above)" >&2; exit 1; }
echo "scripts and units: ok (${#scripts[@]} scripts)"
