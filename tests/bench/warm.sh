#!/bin/bash
# Warm-start benchmark (QEMU backend), alternating in one run (medians):
#   cold   `HX_WARM=off hx run --rm --network none busybox true`   (the kernel boots)
#   warm   `hx run --rm --network none busybox true`               (restored from the template)
#   bare   qemu-system-x86_64 booting the same kernel to an /init that powers off
#   -d -p  `hx run -d -p 8080:80 busybox httpd` until the published port answers, cold and warm
#          (root: hx runs in a network namespace the bench makes, its hx0 bridge in there)
# plus the one-off template builds (first warm runs) and the template's size. Prints a table.
# Usage: tests/bench/warm.sh [RUNS]   (env: HX_KERNEL, HX_INIT, HX (the hx binary))
set -euo pipefail
runs="${1:-7}"
mem=128
. "$(dirname "$0")/lib.sh"
command -v busybox >/dev/null || { echo "bench: busybox-static is needed (apt-get install busybox-static)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: the -d -p figures need root (a network namespace)" >&2; exit 1; }
work="$(mktemp -d /tmp/hx-bench-warm.XXXXXX)"
ns="hx-bench-warm-$$"
ip netns add "$ns"
ip -n "$ns" link set lo up
cleanup() {
    ip netns exec "$ns" "$hx" --root "$work/store" rm -f web >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
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
# `docker run -d -p 8080:80 nginx`'s shape: default network, a published port, a writable
# layer. Milliseconds from the start of `hx run -d` until the port answers (httpd serves the
# /etc/hostname pv-init wrote); the container is removed untimed.
serve() {
    local s e deadline
    s=$(date +%s%N)
    ip netns exec "$ns" "$hx" --root "$work/store" run -d --name web -p 8080:80 --memory "${mem}m" \
        busybox:1.38.0-glibc httpd -f -p 80 -h /etc >/dev/null
    deadline=$((s + 120000000000))
    until ip netns exec "$ns" curl -sf -m 1 -o /dev/null http://127.0.0.1:8080/hostname; do
        [ "$(date +%s%N)" -lt "$deadline" ] || { echo "bench: port 8080 did not answer" >&2; exit 1; }
        sleep 0.02
    done
    e=$(date +%s%N)
    ip netns exec "$ns" "$hx" --root "$work/store" rm -f web >/dev/null
    echo $(((e - s) / 1000000))
}
serve_cold() { HX_WARM=off serve; }
build_ms=$(ms run)   # builds the template
# What the template takes on disk: the device state and the RAM file's allocated blocks.
template_kib=$(du -sk "$work"/store/templates/*/ | awk '{print $1}')
build_net_ms=$(serve)   # builds the -d -p shape's template
cold; bare; serve_cold >/dev/null
cold_t=(); warm_t=(); bare_t=(); ncold_t=(); nwarm_t=()
for _ in $(seq "$runs"); do
    cold_t+=("$(ms cold)")
    warm_t+=("$(ms run)")
    bare_t+=("$(ms bare)")
    ncold_t+=("$(serve_cold)")
    nwarm_t+=("$(serve)")
done
c=$(median "${cold_t[@]}"); w=$(median "${warm_t[@]}"); b=$(median "${bare_t[@]}")
nc=$(median "${ncold_t[@]}"); nw=$(median "${nwarm_t[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "| what ($runs runs, median, TCG, ${mem} MiB, 1 vCPU) | result | runs (ms) |"
echo "|---|---|---|"
echo "| cold \`hx run --rm --network none busybox true\` (HX_WARM=off) | $c ms | ${cold_t[*]} |"
echo "| warm \`hx run --rm --network none busybox true\` (template restore) | $w ms = $(ratio "$c" "$w")× faster | ${warm_t[*]} |"
echo "| bare qemu: kernel + /init that powers off | $b ms | ${bare_t[*]} |"
echo "| warm / bare | $(ratio "$w" "$b")× | |"
echo "| cold \`hx run -d -p 8080:80 busybox httpd\` until the port answers (HX_WARM=off) | $nc ms | ${ncold_t[*]} |"
echo "| warm, same | $nw ms = $(ratio "$nc" "$nw")× faster | ${nwarm_t[*]} |"
echo "| first warm run (builds the template) | $build_ms ms | |"
echo "| first warm -d -p run (builds its template) | $build_net_ms ms | |"
echo "| template on disk (device state + RAM file's blocks) | $((template_kib / 1024)) MiB | |"
