#!/bin/bash
# Host memory per idle container, warm against cold, in one run (QEMU backend): N idle
# `hx run -d --network none busybox sleep` containers, then the PSS (Proportional Set Size,
# /proc/PID/smaps_rollup) of every process hx started for them (QEMU, the log relay), divided
# by N; first cold (HX_WARM=off: the kernel boots), then warm (restored from the template).
# Usage: tests/bench/warm-mem.sh [N...]   (default 1 10 20; env: HX_KERNEL, HX_INIT, HX)
set -euo pipefail
counts=("$@")
[ $# -gt 0 ] || counts=(1 10 20)
mem=128
. "$(dirname "$0")/lib.sh"
work="$(mktemp -d /tmp/hx-bench-warmmem.XXXXXX)"
trap 'h rm -f $(h ps -aq) >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
h load -i "$busybox_dir" >/dev/null
h run --rm --network none --memory "${mem}m" busybox:1.38.0-glibc true >/dev/null   # the template

# Sums of PSS (KiB) of the processes whose command line names this store: all, and QEMU's.
pss() {
    local total=0 qemu=0 pid kb
    for pid in $(pgrep -f -- "$work/store"); do
        kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
        if [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == qemu-system* ]]; then
            qemu=$((qemu + ${kb:-0}))
        fi
    done
    echo "$total $qemu"
}
measure() {   # N: prints KiB per container: all, QEMU's
    local n="$1"
    local i kib
    for i in $(seq "$n"); do
        h run -d --network none --memory "${mem}m" --name "m$i" busybox:1.38.0-glibc \
            sh -c 'echo up; exec sleep 100000' >/dev/null
    done
    for i in $(seq "$n"); do
        until h logs "m$i" 2>/dev/null | grep -q up; do sleep 0.1; done
    done
    sleep 2   # let the guests settle (pv-init idle, page cache filled)
    read -r all qemu < <(pss)
    h rm -f $(h ps -aq) >/dev/null
    echo "$((all / n)) $((qemu / n))"
}
echo "| containers at once (${mem} MiB guests, TCG) | cold: PSS per container, KiB (QEMU's) | warm: PSS per container, KiB (QEMU's) | warm / cold |"
echo "|---|---|---|---|"
for n in "${counts[@]}"; do
    read -r c cq < <(HX_WARM=off measure "$n")
    read -r w wq < <(measure "$n")
    echo "| $n | $c ($cq) | $w ($wq) | $(awk -v a="$w" -v b="$c" 'BEGIN {printf "%.2f", a / b}')× |"
done
