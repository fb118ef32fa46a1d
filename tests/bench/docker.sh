#!/bin/bash
# Docker with hx as its runtime (issue 11's benchmark): `docker run --rm busybox true` with
# runc (docker's default) against `docker run --rm --runtime hx busybox true` (hx-runtime, the
# OCI runtime over hx micro-VMs) and against hx's own `hx run --rm` (warm, and cold with
# HX_WARM=off), alternating in one run. Debian's containerd and dockerd run with their own
# state dirs and sockets under a temp dir, inside a network namespace the bench makes (as
# toolstack/tests/common/docker.rs does); nothing touches the machine's interfaces.
# Usage: tests/bench/docker.sh [RUNS]   (env: HX_KERNEL, HX_INIT, HX (the hx binary),
# HX_RUNTIME (default: hx-runtime beside hx)). Needs root, docker.io and skopeo.
set -euo pipefail
runs="${1:-7}"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/docker-lib.sh"
docker_init "$(mktemp -d /tmp/hx-bench-docker.XXXXXX)" "hxbench-$$"
trap docker_down EXIT
docker_up
skopeo copy -q "oci:$busybox_dir" "docker-archive:$work/busybox.tar:busybox:1.38.0" >/dev/null
"${docker[@]}" load -q -i "$work/busybox.tar" >/dev/null
"$hx" --root "$work/store" load -i "$busybox_dir" >/dev/null

runc_run() { timeout 120 "${docker[@]}" run --rm busybox:1.38.0 true; }
hx_docker() { timeout 300 "${docker[@]}" run --rm --runtime hx busybox:1.38.0 true; }
hx_warm() { timeout 120 "$hx" --root "$work/store" run --rm --network none busybox:1.38.0-glibc true; }
hx_cold() { HX_WARM=off timeout 120 "$hx" --root "$work/store" run --rm --network none busybox:1.38.0-glibc true; }
# One warm-up each (the first hx run builds the warm-start template), then alternate.
runc_run >/dev/null; hx_docker >/dev/null; hx_warm >/dev/null; hx_cold >/dev/null
a=(); b=(); c=(); d=()
for _ in $(seq "$runs"); do
    a+=("$(ms runc_run)"); b+=("$(ms hx_docker)"); c+=("$(ms hx_warm)"); d+=("$(ms hx_cold)")
done
ra=$(median "${a[@]}"); rb=$(median "${b[@]}"); rc=$(median "${c[@]}"); rd=$(median "${d[@]}")
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", x / y}'; }
echo "| what ($runs runs, median, QEMU TCG, alternating) | ms | vs runc |"
echo "|---|---|---|"
echo "| \`docker run --rm busybox true\` (runc) | $ra | 1.00× |"
echo "| \`docker run --rm --runtime hx busybox true\` | $rb | $(ratio "$rb" "$ra")× |"
echo "| \`hx run --rm --network none busybox true\` (warm) | $rc | $(ratio "$rc" "$ra")× |"
echo "| \`hx run --rm --network none busybox true\` (HX_WARM=off) | $rd | $(ratio "$rd" "$ra")× |"
