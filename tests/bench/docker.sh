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
runtime="${HX_RUNTIME:-$(dirname "$hx")/hx-runtime}"
for f in "$runtime" /usr/sbin/dockerd /usr/bin/containerd /usr/bin/docker; do
    [ -x "$f" ] || { echo "bench: missing $f (cargo build --release -p hx-oci-runtime; apt-get install docker.io)" >&2; exit 1; }
done
command -v skopeo >/dev/null || { echo "bench: skopeo is needed" >&2; exit 1; }

work="$(mktemp -d /tmp/hx-bench-docker.XXXXXX)"
ns="hxbench-$$"
docker=(/usr/bin/docker -H "unix://$work/docker.sock")
in_ns=(nsenter "--net=/run/netns/$ns")
cleanup() {
    "${docker[@]}" ps -aq 2>/dev/null | xargs -r "${docker[@]}" rm -f >/dev/null 2>&1 || true
    [ -f "$work/docker.pid" ] && kill "$(cat "$work/docker.pid")" 2>/dev/null
    for _ in $(seq 50); do [ -S "$work/docker.sock" ] || break; sleep 0.2; done
    [ -n "${containerd_pid:-}" ] && kill "$containerd_pid" 2>/dev/null
    pkill -f "containerd-shim.*$work" 2>/dev/null || true
    sleep 1
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
ip netns add "$ns"
ip -n "$ns" link set lo up
cat > "$work/containerd.toml" <<EOF
version = 2
root = "$work/containerd-root"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.ttrpc.sock"
[debug]
  address = ""
EOF
"${in_ns[@]}" /usr/bin/containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
printf '{"runtimes": {"hx": {"path": "%s"}}}\n' "$runtime" > "$work/daemon.json"
"${in_ns[@]}" /usr/sbin/dockerd --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
    -H "unix://$work/docker.sock" --containerd "$work/containerd.sock" --config-file "$work/daemon.json" \
    --storage-driver overlay2 --iptables=true >"$work/dockerd.log" 2>&1 &
for _ in $(seq 300); do "${docker[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
"${docker[@]}" version >/dev/null || { tail -n 5 "$work/dockerd.log" >&2; exit 1; }
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
