#!/bin/bash
# Start-again benchmark (QEMU backend), alternating in one run (medians):
#   `hx run --rm busybox true`   the baseline: writable layer in guest memory (tmpfs)
#   `hx run busybox true`        a container that outlives its VM: its layer on a fresh ext4
#                                disk (mkfs of the sparse 10 GiB file + ext4 in the guest)
#   `hx start -a C`              the same stopped container booted again (e2fsck -p, its layer)
# Prints a markdown table.
# Usage: tests/bench/start.sh [RUNS]   (env: HX_KERNEL, HX_INIT, HX (the hx binary))
set -euo pipefail
runs="${1:-9}"
. "$(dirname "$0")/lib.sh"
work="$(mktemp -d /tmp/hx-bench-start.XXXXXX)"
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu HX_NETWORK=none
trap 'h rm -f $(h ps -aq) >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
h load -i "$busybox_dir" >/dev/null
h create --name again busybox:1.38.0-glibc true >/dev/null
h start -a again
rm_t=(); keep_t=(); start_t=()
for i in $(seq "$runs"); do
    rm_t+=("$(ms h run --rm busybox:1.38.0-glibc true)")
    keep_t+=("$(ms h run --name "keep$i" busybox:1.38.0-glibc true)")
    h rm "keep$i" >/dev/null
    start_t+=("$(ms h start -a again)")
done
r=$(median "${rm_t[@]}"); k=$(median "${keep_t[@]}"); s=$(median "${start_t[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "| what ($runs runs, median, TCG, 128 MiB, 1 vCPU, --network none) | result |"
echo "|---|---|"
echo "| \`hx run --rm busybox true\` (layer in guest memory) | $r ms |"
echo "| \`hx run busybox true\` (layer on its own ext4 disk) | $k ms = $(ratio "$k" "$r")× |"
echo "| \`hx start -a C\` (the stopped container again) | $s ms = $(ratio "$s" "$r")× |"
