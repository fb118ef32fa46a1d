#!/bin/bash
# Exec benchmark (QEMU backend): `hx exec C true` in a running container against
# `hx run --rm busybox true` in the same run (alternating, medians), and the exec channel's
# throughput both ways (`hx exec -i C cat >/dev/null`, `hx exec C dd if=/dev/zero bs=64k`) against
# the host's own `cat` through a pipe. Prints a markdown table.
# Usage: tests/bench/exec.sh [RUNS] [MB]   (env: HX_KERNEL, HX_INIT, HX (the hx binary))
set -euo pipefail
runs="${1:-9}"
mb="${2:-32}"
. "$(dirname "$0")/lib.sh"
work="$(mktemp -d /tmp/hx-bench-exec.XXXXXX)"
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
trap 'h rm -f bench-exec >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
h load -i "$busybox_dir" >/dev/null
h run -d --name bench-exec --network none --memory 128m busybox:1.38.0-glibc sleep 100000 >/dev/null
h exec bench-exec true
run_t=(); exec_t=()
for _ in $(seq "$runs"); do
    run_t+=("$(ms h run --rm --network none --memory 128m busybox:1.38.0-glibc true)")
    exec_t+=("$(ms h exec bench-exec true)")
done
run_ms=$(median "${run_t[@]}"); exec_ms=$(median "${exec_t[@]}")
head -c "${mb}M" /dev/urandom >"$work/data"
secs() { local s e; s=$(date +%s%N); "$@"; e=$(date +%s%N); awk -v n=$((e - s)) 'BEGIN {printf "%.3f", n / 1e9}'; }
host_s=$(secs sh -c "cat '$work/data' | cat >/dev/null")
in_s=$(secs sh -c "h() { \"$hx\" --root \"$work/store\" \"\$@\"; }; h exec -i bench-exec cat <'$work/data' >/dev/null")
out_s=$(secs sh -c "\"$hx\" --root \"$work/store\" exec bench-exec dd if=/dev/zero bs=64k count=$((mb * 16)) 2>/dev/null >/dev/null")
mbps() { awk -v s="$1" -v m="$mb" 'BEGIN {printf "%.1f", m / s}'; }
used=$(h exec bench-exec awk '/MemTotal/ {t=$2} /MemAvailable/ {a=$2} END {printf "%d MiB of %d MiB", (t-a)/1024, t/1024}' /proc/meminfo)
echo "| what ($runs runs, median, TCG, 128 MiB, 1 vCPU; $mb MiB streams) | result |"
echo "|---|---|"
echo "| \`hx run --rm --network none busybox true\` (baseline) | ${run_ms} ms |"
echo "| \`hx exec C true\` in a running container | ${exec_ms} ms |"
echo "| ratio exec / run | $(awk -v a="$exec_ms" -v b="$run_ms" 'BEGIN {printf "%.3f", a / b}')× |"
echo "| host \`cat | cat\` (baseline) | $(mbps "$host_s") MB/s |"
echo "| \`hx exec -i C cat\` (host → guest → host) | $(mbps "$in_s") MB/s |"
echo "| \`hx exec C dd if=/dev/zero bs=64k\` (guest → host) | $(mbps "$out_s") MB/s |"
echo "| guest memory in use (MemTotal − MemAvailable) with the exec channel, one exec | ${used} |"
