#!/bin/bash
# Checkpoint/restore benchmark (QEMU backend, docs/checkpoint.md), one 128 MiB container
# (`--memory 128m`, no network, a counter loop, FILL_MB MiB of its RAM written with random
# bytes first), alternating in one run (medians of RUNS):
#   create    `hx checkpoint create c cpN` (the VM paused, its layer copied, RAM and devices
#             saved, the VM stopped)
#   restore   `hx start --checkpoint cpN c` until `hx exec c true` answers
#   cold      `HX_WARM=off hx start c` of the same (stopped) container until `hx exec c true`
#             answers: the baseline, a boot of the kernel
#   warm      `hx start c` until `hx exec` answers (restored from the warm-start template)
# create and restore each in both RAM formats, alternating: the migration stream (the default)
# and QEMU's mapped-ram (HX_CHECKPOINT_RAM=mapped: each page at its offset of a sparse file);
# and the checkpoints' sizes on disk (allocated blocks: state, layer copy).
# Usage: tests/bench/checkpoint.sh [RUNS]   (env: HX_KERNEL, HX_INIT, HX, FILL_MB)
set -euo pipefail
runs="${1:-5}"
mem=128
fill="${FILL_MB:-0}"
. "$(dirname "$0")/lib.sh"
work="$(mktemp -d /tmp/hx-bench-ckpt.XXXXXX)"
cleanup() {
    h rm -f c >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu HX_NETWORK=none
export HX_TEMPLATE_DIR="$work/templates"
h load -i "$busybox_dir" >/dev/null
workload="head -c ${fill}m /dev/urandom > /dev/shm/fill; i=0; \
    while :; do i=\$((i+1)); echo \$i > /tmp/n; sleep 0.2; done"
until_exec() {
    local deadline=$(($(date +%s) + 120))
    until h exec c true >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: exec never answered" >&2; exit 1; }
        sleep 0.02
    done
}
# Milliseconds from the start of `hx start ARGS` until the container's exec answers.
start_until_exec() {
    local s e
    s=$(date +%s%N)
    h start "$@" c >/dev/null
    until_exec
    e=$(date +%s%N)
    echo $(((e - s) / 1000000))
}
# A freshly booted container whose fill is written (the counter is running).
fresh() {
    until h exec c sh -c '[ -s /tmp/n ]' >/dev/null 2>&1; do sleep 0.1; done
}
h run -d --name c --memory "${mem}m" busybox:1.38.0-glibc sh -c "$workload" >/dev/null
until_exec
fresh
create_t=(); restore_t=(); mcreate_t=(); mrestore_t=(); cold_t=(); warm_t=()
kib() { du -sk "$work"/store/containers/*/checkpoints/"$1"/"$2" | awk '{print $1}'; }
for i in $(seq "$runs"); do
    create_t+=("$(ms h checkpoint create c "cp$i")")
    restore_t+=("$(start_until_exec --checkpoint "cp$i")")
    fresh
    mcreate_t+=("$(HX_CHECKPOINT_RAM=mapped ms h checkpoint create c "mcp$i")")
    mrestore_t+=("$(start_until_exec --checkpoint "mcp$i")")
    [ "$i" = 1 ] && {
        state_kib=$(kib cp1 state); mstate_kib=$(kib mcp1 state); layer_kib=$(kib cp1 upper.img)
    }
    h checkpoint rm c "cp$i"
    h checkpoint rm c "mcp$i"
    h stop -t 1 c >/dev/null
    cold_t+=("$(HX_WARM=off start_until_exec)")
    h stop -t 1 c >/dev/null
    warm_t+=("$(start_until_exec)")
    fresh
done
cr=$(median "${create_t[@]}"); rs=$(median "${restore_t[@]}")
mcr=$(median "${mcreate_t[@]}"); mrs=$(median "${mrestore_t[@]}")
co=$(median "${cold_t[@]}"); wa=$(median "${warm_t[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "| what ($runs runs, median, TCG, ${mem} MiB, 1 vCPU, ${fill} MiB filled) | result | runs (ms) |"
echo "|---|---|---|"
echo "| \`hx checkpoint create c cpN\` (stream) | $cr ms | ${create_t[*]} |"
echo "| \`hx start --checkpoint cpN c\` until \`hx exec\` answers (stream) | $rs ms = $(ratio "$co" "$rs")× faster than cold | ${restore_t[*]} |"
echo "| \`hx checkpoint create c cpN\` (mapped-ram) | $mcr ms | ${mcreate_t[*]} |"
echo "| \`hx start --checkpoint cpN c\` until \`hx exec\` answers (mapped-ram) | $mrs ms = $(ratio "$co" "$mrs")× faster than cold | ${mrestore_t[*]} |"
echo "| baseline: cold \`hx start c\` (HX_WARM=off) until \`hx exec\` answers | $co ms | ${cold_t[*]} |"
echo "| warm \`hx start c\` until \`hx exec\` answers | $wa ms | ${warm_t[*]} |"
echo "| on disk: state (stream) / state (mapped-ram) / layer copy | $state_kib KiB / $mstate_kib KiB / $layer_kib KiB | |"
