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

stage setup scripts/setup.sh --with-tests || true
if [ "$failed" -gt 0 ]; then
    echo "setup failed: nothing else can run"
    echo "suites: $passed passed, $failed failed"
    exit 1
fi
export HX_KERNEL=/usr/local/lib/hx/bzImage HX_INIT=/usr/local/lib/hx/pv-init
stage fmt cargo fmt --all --check
# --release: the build scripts and proc-macros setup built for the release profile serve
# clippy too (cold: 142 s against 200 s for the dev profile, 2026-12-08).
stage clippy cargo clippy --release --workspace --all-targets --locked -- -D warnings
stage cargo-test cargo test --release --workspace --no-fail-fast
# lab_args ARRAY NAME...: appends to ARRAY the options a lab boot needs to run checks/NAME.sh,
# in the order given, with the images and files each of them uses (xen_lab's $layout, $hostile,
# $bindings and $cri).
lab_args() {
    local -n lab_args_out="$1"; shift
    local n
    for n in "$@"; do
        case "$n" in
            nginx) lab_args_out+=(--image "nginx=$layout/nginx");;
            hostile) lab_args_out+=(--file "$hostile:/lab/bin/xs-hostile");;
            bindings) lab_args_out+=(--file "$bindings:/lab/bin/xen-bindings-dom0");;
            compat) lab_args_out+=(--image "redis=$layout/redis" --image "mariadb=$layout/mariadb");;
            docker) lab_args_out+=(--extras);;
            cri) lab_args_out+=(--extras --file "$cri:/lab/bin/cri-test");;
            cri-pvh | cri-pv) lab_args_out+=(--extras --file "$cri:/lab/bin/cri-test" --file "tests/xen-lab/checks/cri.sh:/lab/cri.sh");;
        esac
        lab_args_out+=(--script "tests/xen-lab/checks/$n.sh")
    done
}
# lab_failed SERIAL_LOG NAME...: the NAMEs (the lab's scripts, in order) that exited non-zero or
# never finished (no "took" line: the lab stopped before them).
lab_failed() {
    local log="$1" i=0 n f; shift
    for n in "$@"; do
        i=$((i + 1)); f="$(printf %02d "$i")-$n.sh"
        if ! grep -a -q "^HXLAB-OUT === $f took " "$log" 2>/dev/null || grep -a -q "^HXLAB-OUT === $f exited " "$log"; then
            echo "$n"
        fi
    done
}
# The Xen lab, in two boots run side by side (one lab keeps about one host core busy; this
# machine has two): A, the built-in suite, then inside dom0 volumes, control, lifecycle, exec,
# the xl verbs of xl-misc, checkpoint, xl save/restore, the hostile guest, warm start and the
# CRI test's PV half; B, the nginx acceptance, pods, the xl admin verbs, xen-bindings' dom0
# tests, Redis and MariaDB from the compatibility suite, and last (dockerd changes dom0's
# firewall) docker.io and containerd driving hx-runtime and the shim, then Kubernetes' CRI
# through containerd and the shim, PVH (toolstack/tests/cri.rs's binary, in a network
# namespace of its own). HX_LAB_ARGS adds options to both, e.g. --no-suite while developing.
xen_lab() {
    local layout bindings cri hostile results rc=0 lab
    # CI runs the lab: a missing runner fails the stage instead of skipping it unseen.
    [ -x tests/xen-lab/run ] || { echo "xen-lab: tests/xen-lab/run is missing or not executable"; return 1; }
    layout="$(mktemp -d /tmp/hx-nginx-layout.XXXXXX)"
    results="$repo/target/xen-lab"
    # Test binaries of the cargo-test stage, already built (cargo's JSON output names them;
    # --workspace: the features of that build, a package alone would build its own).
    local built t0=$SECONDS
    built="$(cargo test --release --workspace --no-run --message-format=json 2>/dev/null |
        jq -r 'select(.profile.test == true) | "\(.target.name) \(.executable)"')"
    bindings="$(awk '$1 == "dom0" {print $2}' <<<"$built" | tail -n 1)"
    [ -x "$bindings" ] || { echo "xen-lab: cannot build xen-bindings' dom0 test binary"; return 1; }
    cri="$(awk '$1 == "cri" {print $2}' <<<"$built" | tail -n 1)"
    [ -x "$cri" ] || { echo "xen-lab: cannot build the CRI test binary"; return 1; }
    hostile="$(scripts/build-xs-hostile.sh)" || { echo "xen-lab: cannot build xs-hostile"; return 1; }
    echo "xen-lab: test binaries and xs-hostile ready ($((SECONDS - t0)) s)"; t0=$SECONDS
    tests/images/nginx.sh "$layout/nginx" && tests/images/compat.sh redis "$layout/redis" &&
        tests/images/compat.sh mariadb "$layout/mariadb" &&
        echo "xen-lab: test images ready ($((SECONDS - t0)) s)" && t0=$SECONDS &&
        # Caches (Xen, dom0, extras, the KVM verdict) once, before the two labs read them.
        tests/xen-lab/run --extras --prepare-only || { rm -rf "$layout"; return 1; }
    echo "xen-lab: caches ready ($((SECONDS - t0)) s)"
    mkdir -p "$results"
    # Placed by a local CI of 2026-12-07 21:00 with one CPU online (lab A 2623 s, B 3078 s;
    # the CRI test's PVH half 523 s, its PV half 258 s, hostile.sh 162 s, nginx.sh 69 s) and
    # the images loaded on the host since (dom0's loads took A ~45 s, B ~135 s): ~2760 s
    # each; a local CI at a slower hour (2026-12-08 01:00) ran A 3178 s, B 3198 s. nginx.sh
    # goes before docker.sh (dockerd changes dom0's firewall).
    local scripts_a=(volumes control lifecycle exec xl-misc checkpoint xl-save hostile warm cri-pv)
    local scripts_b=(nginx pods xl-admin bindings compat docker cri-pvh)
    # Each boot takes ~2500-2600 s beside the other here (2026-12-07 15:50); the same
    # machine at a busier hour ran them 1.3-2x slower (lab A ~3400 s at 18:00), so they get
    # 3500 s (the run's default is 3000): with at most ~1870 s before the lab, that is the
    # most CI's 90 minutes leave.
    local args_a=(--timeout 3500) args_b=(--timeout 3500)
    lab_args args_a "${scripts_a[@]}"
    lab_args args_b "${scripts_b[@]}"
    # shellcheck disable=SC2086
    tests/xen-lab/run ${HX_LAB_ARGS:-} --results "$results/a" "${args_a[@]}" > "$results/a.out" 2>&1 &
    local pid_a=$!
    # shellcheck disable=SC2086
    tests/xen-lab/run ${HX_LAB_ARGS:-} --no-suite --results "$results/b" "${args_b[@]}" > "$results/b.out" 2>&1 &
    local pid_b=$!
    wait "$pid_a" || rc=1
    wait "$pid_b" || rc=1
    for lab in a b; do
        echo "=== xen-lab $lab (console: $results/$lab/serial.log)"
        cat "$results/$lab.out"
    done
    # The lab's known faults (docs/xen-lab.md: guests and dom0 processes that hang or crash at
    # random under TCG with two labs on two cores) fail a script now and then: the scripts that
    # failed or never ran get one more chance, together in one fresh boot with the host to
    # themselves, if CI's time allows. The suite's checks get none. Both outcomes are printed.
    if [ "$rc" != 0 ] && ! grep -a -q '^HXLAB-RESULT FAIL' "$results/a/serial.log" 2>/dev/null; then
        local again=() budget=$((5250 - SECONDS))
        mapfile -t again < <(lab_failed "$results/a/serial.log" "${scripts_a[@]}"; lab_failed "$results/b/serial.log" "${scripts_b[@]}")
        if [ "${#again[@]}" -gt 0 ] && [ "$budget" -ge 400 ]; then
            echo "=== xen-lab: FAILED in the first boots: ${again[*]}; once more in a fresh boot (at most $budget s)"
            local args_again=()
            lab_args args_again "${again[@]}"
            # shellcheck disable=SC2086
            if tests/xen-lab/run ${HX_LAB_ARGS:-} --no-suite --timeout "$budget" --results "$results/again" \
                "${args_again[@]}" > "$results/again.out" 2>&1; then
                rc=0; echo "=== xen-lab: passed on the second boot: ${again[*]} (their first failures above)"
            fi
            echo "=== xen-lab again (console: $results/again/serial.log)"
            cat "$results/again.out"
        fi
    fi
    rm -rf "$layout"
    return $rc
}
stage xen-lab xen_lab

[ "$failed" -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
