#!/bin/bash
# Warm-start benchmark (QEMU backend), alternating in one run (medians):
#   cold   `HX_WARM=off hx run --rm --network none busybox true`   (the kernel boots)
#   warm   `hx run --rm --network none busybox true`               (restored from the template)
#   bare   qemu-system-x86_64 booting the same kernel to an /init that powers off
# plus the one-off template build (first warm run) and the template's size. Prints a table.
# Usage: tests/bench/warm.sh [RUNS]   (env: HX_KERNEL, HX_INIT, HX (the hx binary))
set -euo pipefail
runs="${1:-7}"
mem=128
. "$(dirname "$0")/lib.sh"
command -v busybox >/dev/null || { echo "bench: busybox-static is needed (apt-get install busybox-static)" >&2; exit 1; }
work="$(mktemp -d /tmp/hx-bench-warm.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
h load -i "$busybox_dir" >/dev/null

mkdir -p "$work/initrd/bin"
cp "$(command -v busybox)" "$work/initrd/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' >"$work/initrd/init"
chmod +x "$work/initrd/init"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet) >"$work/poweroff.cpio"
mhz="$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)"
bare() {
    timeout 120 qemu-system-x86_64 -M microvm,rtc=on -accel tcg -cpu max -m "${mem}M" -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -kernel "$kernel" -initrd "$work/poweroff.cpio" \
        -append "console=ttyS0 quiet panic=-1 tsc_early_khz=$mhz tsc=reliable" -serial null </dev/null >/dev/null
}
run() { timeout 120 "$hx" --root "$work/store" run --rm --network none --memory "${mem}m" busybox:1.38.0-glibc true; }
cold() { HX_WARM=off run; }
build_ms=$(ms run)   # builds the template
state=$(du -b "$work"/store/templates/*/state | awk '{print $1}')
cold; bare
cold_t=(); warm_t=(); bare_t=()
for _ in $(seq "$runs"); do
    cold_t+=("$(ms cold)")
    warm_t+=("$(ms run)")
    bare_t+=("$(ms bare)")
done
c=$(median "${cold_t[@]}"); w=$(median "${warm_t[@]}"); b=$(median "${bare_t[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "| what ($runs runs, median, TCG, ${mem} MiB, 1 vCPU, --network none) | result | runs (ms) |"
echo "|---|---|---|"
echo "| cold \`hx run --rm busybox true\` (HX_WARM=off) | $c ms | ${cold_t[*]} |"
echo "| warm \`hx run --rm busybox true\` (template restore) | $w ms = $(ratio "$c" "$w")× faster | ${warm_t[*]} |"
echo "| bare qemu: kernel + /init that powers off | $b ms | ${bare_t[*]} |"
echo "| warm / bare | $(ratio "$w" "$b")× | |"
echo "| first warm run (builds the template) | $build_ms ms | |"
echo "| template size (migration stream) | $((state / 1048576)) MiB | |"
