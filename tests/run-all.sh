#!/bin/bash
# The whole test suite: sets up hx (scripts/setup.sh), then runs the unit and end-to-end tests
# (real registry, real QEMU guests) and the Xen-in-QEMU lab. Ends with "N passed, N failed"
# counting the suites.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
passed=0; failed=0; failed_names=()
stage() {
    local name="$1"; shift
    local t0=$SECONDS
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

stage setup scripts/setup.sh || true
if [ "$failed" -gt 0 ]; then
    echo "setup failed: nothing else can run"
    echo "suites: $passed passed, $failed failed"
    exit 1
fi
export HX_KERNEL=/usr/local/lib/hx/bzImage HX_INIT=/usr/local/lib/hx/pv-init
stage cargo-test cargo test --release --workspace --no-fail-fast
[ -x tests/guest/run.sh ] && stage guest-boot tests/guest/run.sh
[ -x tests/xen-lab/run ] && stage xen-lab tests/xen-lab/run

[ "$failed" -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
