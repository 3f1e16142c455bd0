#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the workspace binaries in release mode, runs unit
# and integration tests with cargo-nextest (dev profile), then the
# end-to-end flow (package e2e, which brings a cluster up with hack/local-up-cluster.sh -d and down
# again) once on embedded SQLite storage and once on etcd, and finally every kube-perf scenario at a
# tiny size (hack/bench.sh --smoke; a check that the benchmarks run, not a measurement). Stops at the
# first failing stage.
#
# Environment:
#   KUBE_TEST_SKIP_E2E=1   skip the end-to-end stages (no root needed then, unless packages are missing)
#   KUBE_TEST_STORAGES     storages for the e2e stages (default "sqlite etcd")
#   KUBE_TEST_SKIP_BENCH=1 skip the benchmark smoke stage (it runs only with the e2e stages: it needs root)
#   NEXTEST_ARGS           extra arguments for every cargo nextest run (e.g. "--no-fail-fast")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A one-shot build gains nothing from incremental compilation, and its caches take tens of GB of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

SKIP_E2E=${KUBE_TEST_SKIP_E2E:-0}
STORAGES=${KUBE_TEST_STORAGES:-sqlite etcd}
read -r -a EXTRA <<<"${NEXTEST_ARGS:-}"

PASSED=0
FAILED=0
STAGES=()
START=$SECONDS

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

summary() {
    local rc=$?
    printf '\n' >&2
    local s
    for s in "${STAGES[@]}"; do printf '    %s\n' "$s" >&2; done
    printf 'test.sh: %d passed, %d failed (%ds)%s\n' "$PASSED" "$FAILED" "$((SECONDS - START))" \
        "$( ((rc == 0)) && echo "" || echo "; FAILED, exit $rc")" >&2
}
trap summary EXIT

# nextest STAGE ARGS...: one cargo nextest run; adds its counts to the totals, fails on failure.
nextest() {
    local stage=$1 out rc line passed failed t0=$SECONDS
    shift
    out=$(mktemp)
    log "$stage: cargo nextest run $*"
    set +e
    cargo nextest run "$@" "${EXTRA[@]}" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E '^ *Summary \[' "$out" | tail -n 1 || true)
    rm -f "$out"
    passed=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    failed=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    if ((rc != 0 && failed == 0)); then
        failed=1 # the run itself failed (build error, no tests, timeout)
    fi
    PASSED=$((PASSED + passed))
    FAILED=$((FAILED + failed))
    STAGES+=("$stage: $passed passed, $failed failed ($((SECONDS - t0))s)")
    ((rc == 0)) || die "$stage failed (cargo nextest exit $rc); see the output above"
}

if [[ $SKIP_E2E != 1 && $(id -u) -ne 0 ]]; then
    die "the end-to-end tests need root (try: sudo hack/test.sh, or KUBE_TEST_SKIP_E2E=1 hack/test.sh)"
fi

log "dependencies (hack/install-deps.sh)"
hack/install-deps.sh || die "installing dependencies failed (see above)"

log "scripts and systemd units (hack/verify-scripts.sh)"
hack/verify-scripts.sh || die "script or unit checks failed (see above)"
STAGES+=("scripts and units: ok")

log "build: cargo build --release --workspace --bins"
t0=$SECONDS
cargo build --release --workspace --bins || die "cargo build failed (see above)"
STAGES+=("build: ok ($((SECONDS - t0))s)")

# Unit and integration tests build in the dev profile: compiling ~30 test binaries with optimisations
# costs far more than the tests save by running faster. The e2e stage uses the release binaries.
nextest "unit+integration" --workspace --no-tests=warn

if [[ $SKIP_E2E == 1 ]]; then
    STAGES+=("e2e: skipped (KUBE_TEST_SKIP_E2E=1)")
    exit 0
fi

# The binaries are built; the e2e test's local-up-cluster.sh must not build again.
export KUBE_SKIP_BUILD=1 KUBE_E2E=1
for storage in $STORAGES; do
    export KUBE_STORAGE=$storage
    nextest "e2e ($storage)" --release -p e2e --run-ignored only --no-capture --no-tests=fail
done

if [[ ${KUBE_TEST_SKIP_BENCH:-0} == 1 ]]; then
    STAGES+=("bench smoke: skipped (KUBE_TEST_SKIP_BENCH=1)")
    exit 0
fi
log "bench smoke: hack/bench.sh --smoke"
t0=$SECONDS
bench_out=$(mktemp)
BENCH_SKIP_BUILD=1 BENCH_OUT=$bench_out hack/bench.sh --smoke || die "hack/bench.sh --smoke failed (see above)"
rm -f "$bench_out"
STAGES+=("bench smoke: ok ($((SECONDS - t0))s)")
