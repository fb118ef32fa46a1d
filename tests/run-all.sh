#!/bin/bash
# The whole test suite: sets up hx (scripts/setup.sh), checks formatting (rustfmt) and lints
# (clippy, warnings are errors), then runs the unit and end-to-end tests
# (real registry, real QEMU guests, networking in namespaces) and the Xen-in-QEMU lab with the
# nginx acceptance inside dom0. Ends with "N passed, N failed"
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
stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets --locked -- -D warnings
stage cargo-test cargo test --release --workspace --no-fail-fast
# The Xen lab, in two boots run side by side (one lab keeps about one host core busy; this
# machine has two): A, the built-in suite, then inside dom0 the nginx acceptance, volumes,
# control, lifecycle, exec, checkpoint and the hostile guest; B, pods, xl save/restore, the xl
# admin verbs, xen-bindings' dom0 tests, Redis and MariaDB from the compatibility suite,
# and last (dockerd changes dom0's firewall) docker.io and containerd driving hx-runtime and the
# shim, then Kubernetes' CRI through containerd and the shim (toolstack/tests/cri.rs's binary,
# in a network namespace of its own). HX_LAB_ARGS adds options to both, e.g. --no-suite while developing.
xen_lab() {
    local layout bindings cri hostile results rc=0 lab
    # CI runs the lab: a missing runner fails the stage instead of skipping it unseen.
    [ -x tests/xen-lab/run ] || { echo "xen-lab: tests/xen-lab/run is missing or not executable"; return 1; }
    layout="$(mktemp -d /tmp/hx-nginx-layout.XXXXXX)"
    results="$repo/target/xen-lab"
    # The test binary of the cargo-test stage (already built; cargo's JSON output names it).
    bindings="$(cargo test --release -p xen-bindings --test dom0 --no-run --message-format=json 2>/dev/null |
        jq -r 'select(.profile.test == true and .target.name == "dom0") | .executable' | tail -n 1)"
    [ -x "$bindings" ] || { echo "xen-lab: cannot build xen-bindings' dom0 test binary"; return 1; }
    cri="$(cargo test --release -p hx-toolstack --test cri --no-run --message-format=json 2>/dev/null |
        jq -r 'select(.profile.test == true and .target.name == "cri") | .executable' | tail -n 1)"
    [ -x "$cri" ] || { echo "xen-lab: cannot build the CRI test binary"; return 1; }
    hostile="$(scripts/build-xs-hostile.sh)" || { echo "xen-lab: cannot build xs-hostile"; return 1; }
    tests/images/nginx.sh "$layout/nginx" && tests/images/compat.sh redis "$layout/redis" &&
        tests/images/compat.sh mariadb "$layout/mariadb" &&
        # Caches (Xen, dom0, extras, the KVM verdict) once, before the two labs read them.
        tests/xen-lab/run --extras --prepare-only || { rm -rf "$layout"; return 1; }
    mkdir -p "$results"
    # shellcheck disable=SC2086
    tests/xen-lab/run ${HX_LAB_ARGS:-} --results "$results/a" --image "nginx=$layout/nginx" \
        --script tests/xen-lab/checks/nginx.sh --script tests/xen-lab/checks/volumes.sh \
        --script tests/xen-lab/checks/control.sh --script tests/xen-lab/checks/lifecycle.sh \
        --script tests/xen-lab/checks/exec.sh --script tests/xen-lab/checks/xl-misc.sh \
        --script tests/xen-lab/checks/checkpoint.sh \
        --file "$hostile:/lab/bin/xs-hostile" --script tests/xen-lab/checks/hostile.sh \
        --script tests/xen-lab/checks/warm.sh \
        > "$results/a.out" 2>&1 &
    local pid_a=$!
    # shellcheck disable=SC2086
    tests/xen-lab/run ${HX_LAB_ARGS:-} --no-suite --results "$results/b" \
        --image "redis=$layout/redis" --image "mariadb=$layout/mariadb" \
        --script tests/xen-lab/checks/pods.sh \
        --script tests/xen-lab/checks/xl-save.sh \
        --script tests/xen-lab/checks/xl-admin.sh \
        --file "$bindings:/lab/bin/xen-bindings-dom0" --script tests/xen-lab/checks/bindings.sh \
        --script tests/xen-lab/checks/compat.sh \
        --extras --script tests/xen-lab/checks/docker.sh \
        --file "$cri:/lab/bin/cri-test" --script tests/xen-lab/checks/cri.sh \
        > "$results/b.out" 2>&1 &
    local pid_b=$!
    wait "$pid_a" || rc=1
    wait "$pid_b" || rc=1
    for lab in a b; do
        echo "=== xen-lab $lab (console: $results/$lab/serial.log)"
        cat "$results/$lab.out"
    done
    rm -rf "$layout"
    return $rc
}
stage xen-lab xen_lab

[ "$failed" -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
