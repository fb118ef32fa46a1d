#!/bin/bash
# Guest boot benchmark (QEMU backend): `hx run --rm busybox true` end to end, versus a bare
# qemu-system-x86_64 booting the same kernel with the same memory and an initramfs whose /init
# only powers off. Also reports the guest memory in use after boot. Prints a markdown table.
# Usage: tests/bench/run.sh [RUNS]   (env: HX_KERNEL, HX_INIT, HX (the hx binary))
set -euo pipefail
runs="${1:-5}"
mem=128
. "$(dirname "$0")/lib.sh"
command -v busybox >/dev/null || { echo "bench: busybox-static is needed (apt-get install busybox-static)" >&2; exit 1; }

work="$(mktemp -d /tmp/hx-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
"$hx" --root "$work/store" load -i "$busybox_dir" >/dev/null

# The baseline initramfs: /init powers the VM off at once.
mkdir -p "$work/initrd/bin"
cp "$(command -v busybox)" "$work/initrd/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' >"$work/initrd/init"
chmod +x "$work/initrd/init"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet) >"$work/poweroff.cpio"

# Same machine and kernel command line as the QEMU backend under TCG (toolstack/engine/src/backend/qemu.rs).
mhz="$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)"
append="console=ttyS0 quiet panic=-1 tsc_early_khz=$mhz tsc=reliable"
bare() {
    timeout 120 qemu-system-x86_64 -M microvm,rtc=on -accel tcg -cpu max -m "${mem}M" -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -kernel "$kernel" -initrd "$work/poweroff.cpio" \
        -append "$append" -serial "file:$work/bare-console.log" </dev/null >/dev/null
}
hxrun() {
    timeout 120 "$hx" --root "$work/store" run --rm --network none --memory "${mem}m" busybox:1.38.0-glibc true </dev/null
}
# Alternate the two so that load from other processes hits both alike; one warm-up run each.
bare; hxrun
bare_t=(); hx_t=()
for _ in $(seq "$runs"); do
    bare_t+=("$(ms bare)")
    hx_t+=("$(ms hxrun)")
done
bare_ms=$(median "${bare_t[@]}")
hx_ms=$(median "${hx_t[@]}")
ratio=$(awk -v a="$hx_ms" -v b="$bare_ms" 'BEGIN {printf "%.2f", a / b}')
used=$("$hx" --root "$work/store" run --rm --network none --memory "${mem}m" busybox:1.38.0-glibc \
    awk '/MemTotal/ {t=$2} /MemAvailable/ {a=$2} END {printf "%d MiB of %d MiB", (t-a)/1024, t/1024}' /proc/meminfo)

echo "| what ($runs runs, median, TCG, ${mem} MiB, 1 vCPU) | result |"
echo "|---|---|"
echo "| bare qemu-system-x86_64: kernel + /init that powers off | ${bare_ms} ms |"
echo "| \`hx run --rm busybox true\` end to end | ${hx_ms} ms |"
echo "| ratio hx / bare (target ≤ 1.1) | ${ratio}× |"
echo "| guest memory in use after boot (MemTotal − MemAvailable) | ${used} |"
