#!/bin/bash
# nginx through a published port versus the same nginx run directly on the host, in one run:
# wrk from a client network namespace over a veth, to `hx run -p 8080:80 nginx` (QEMU backend)
# and to the image's own nginx binary and config started with chroot in the "host" namespace.
# Prints a markdown table (requests/s, p99 latency). Needs root (namespaces), wrk, mmdebstrap.
# Usage: tests/bench/nginx.sh [SECONDS] [CONNECTIONS]   (env: HX_KERNEL, HX_INIT, HX, CPUS: guest vCPUs)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
secs="${1:-10}"
conns="${2:-16}"
hx="${HX:-$repo/target/release/hx}"
export HX_KERNEL="${HX_KERNEL:-/usr/local/lib/hx/bzImage}" HX_INIT="${HX_INIT:-/usr/local/lib/hx/pv-init}" HX_BACKEND=qemu
for t in wrk mmdebstrap curl; do
    command -v "$t" >/dev/null || { echo "bench: $t is needed (apt-get install $t)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (network namespaces)" >&2; exit 1; }

tag="hxb$$"
host="$tag-h"; client="$tag-c"
work="$(mktemp -d /tmp/hx-bench-nginx.XXXXXX)"
cleanup() {
    ip netns exec "$host" "$hx" --root "$work/store" rm -f web >/dev/null 2>&1 || true
    [ -n "${native_pid:-}" ] && kill "$native_pid" 2>/dev/null && wait "$native_pid" 2>/dev/null
    ip netns del "$host" 2>/dev/null || true
    ip netns del "$client" 2>/dev/null || true
    umount -R "$work/rootfs/dev" "$work/rootfs/proc" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$host"; ip netns add "$client"
ip link add "${tag}h" netns "$host" type veth peer name "${tag}c" netns "$client"
ip -n "$host" addr add 192.168.77.1/24 dev "${tag}h"; ip -n "$host" link set "${tag}h" up; ip -n "$host" link set lo up
ip -n "$client" addr add 192.168.77.2/24 dev "${tag}c"; ip -n "$client" link set "${tag}c" up; ip -n "$client" link set lo up

"$repo/tests/images/nginx.sh" "$work/layout" >/dev/null
"$hx" --root "$work/store" load -i "$work/layout" >/dev/null
image="$("$hx" --root "$work/store" images -q | head -n 1 || true)"

wait_http() {
    for _ in $(seq 1 240); do
        ip netns exec "$client" curl -sf -m 2 -o /dev/null "$1" && return 0
        sleep 0.5
    done
    echo "bench: $1 did not answer" >&2; exit 1
}
# wrk's "Requests/sec" and the 99% line of --latency, as "RPS P99".
measure() {
    ip netns exec "$client" wrk -t2 -c"$conns" -d"${secs}s" --latency "$1" > "$work/wrk.out"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")"
    p99="$(awk '$1 == "99%" {print $2}' "$work/wrk.out")"
    echo "$rps $p99"
}

ip netns exec "$host" "$hx" --root "$work/store" run -d --name web --cpus "${CPUS:-1}" -p 8080:80 "$image" >/dev/null
wait_http http://192.168.77.1:8080/
read -r hx_rps hx_p99 < <(measure http://192.168.77.1:8080/)
ip netns exec "$host" "$hx" --root "$work/store" rm -f web >/dev/null

# The same nginx binary and configuration, directly on the host (its namespace).
mkdir -p "$work/rootfs"
tar -C "$work/rootfs" -xf "$(ls -t /var/cache/hx-tests/nginx-*.tar | head -n 1)"
mount --bind /dev "$work/rootfs/dev"; mount -t proc proc "$work/rootfs/proc"
ip netns exec "$host" chroot "$work/rootfs" nginx -g 'daemon off;' >/dev/null 2>&1 &
native_pid=$!
wait_http http://192.168.77.1:80/
read -r nat_rps nat_p99 < <(measure http://192.168.77.1:80/)

ratio="$(awk -v a="$hx_rps" -v b="$nat_rps" 'BEGIN {printf "%.3f", a / b}')"
echo "| nginx, wrk -t2 -c$conns -d${secs}s from a client namespace | requests/s | p99 latency |"
echo "|---|---|---|"
echo "| native: the image's nginx, chroot on the host | $nat_rps | $nat_p99 |"
echo "| \`hx run -p 8080:80 nginx\` (QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}'), $(cat "$work/store/assets"/kvm-probe-* 2>/dev/null | head -n1 || echo tcg), ${CPUS:-1} vCPU) | $hx_rps | $hx_p99 |"
echo "| ratio hx / native (target ≥ 0.8) | $ratio | |"
