#!/bin/bash
# The compat suite's databases through a published port versus the same server run natively,
# in one run (docs/benchmarks.md). Redis: `redis-benchmark -q -n N -t set,get` from a client
# network namespace over a veth to `hx run -p 6379:6379 redis` (QEMU backend) and to the
# image's own redis-server binary started with chroot in the "host" namespace on port 6380.
# MariaDB (MARIADB=1): `mysqlslap` the same way (hx on 3306, native on 3307).
# Needs root (namespaces), mmdebstrap, redis-tools, mariadb-client (for MARIADB=1).
# Usage: tests/bench/compat.sh [REQUESTS]  (env: HX_KERNEL, HX_INIT, HX, CPUS, MARIADB=1)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
n="${1:-20000}"
hx="${HX:-$repo/target/release/hx}"
export HX_KERNEL="${HX_KERNEL:-/usr/local/lib/hx/bzImage}" HX_INIT="${HX_INIT:-/usr/local/lib/hx/pv-init}" HX_BACKEND=qemu
for t in mmdebstrap redis-benchmark redis-cli; do
    command -v "$t" >/dev/null || { echo "bench: $t is needed (apt-get install mmdebstrap redis-tools)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (network namespaces)" >&2; exit 1; }

tag="hxc$$"
host="$tag-h"; client="$tag-c"
work="$(mktemp -d /tmp/hx-bench-compat.XXXXXX)"
pids=()
cleanup() {
    ip netns exec "$host" "$hx" --root "$work/store" rm -f rd db >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    ip netns del "$host" 2>/dev/null || true
    ip netns del "$client" 2>/dev/null || true
    for r in "$work"/rootfs-*; do
        [ -d "$r" ] && umount -R "$r/dev" "$r/proc" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$host"; ip netns add "$client"
ip link add "${tag}h" netns "$host" type veth peer name "${tag}c" netns "$client"
ip -n "$host" addr add 192.168.77.1/24 dev "${tag}h"; ip -n "$host" link set "${tag}h" up; ip -n "$host" link set lo up
ip -n "$client" addr add 192.168.77.2/24 dev "${tag}c"; ip -n "$client" link set "${tag}c" up; ip -n "$client" link set lo up
H=192.168.77.1
C() { ip netns exec "$client" "$@"; }
X() { ip netns exec "$host" "$hx" --root "$work/store" "$@"; }

# The image's rootfs, unpacked for a native run of the same binaries (chroot).
rootfs() {
    local dir="$work/rootfs-$1"
    mkdir -p "$dir"
    tar -C "$dir" -xf "$(ls -t /var/cache/hx-tests/compat-"$1"-*.tar | head -n 1)"
    mount --bind /dev "$dir/dev"; mount -t proc proc "$dir/proc"
    echo "$dir"
}
wait_for() {
    for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "bench: no answer from: $*" >&2; exit 1
}
# redis-benchmark -q prints "SET: 1234.56 requests per second, p50=1.234 msec".
rb() { C redis-benchmark -h "$H" -p "$1" -q -n "$n" -t set,get | tr '\r' '\n' | grep -E '^(SET|GET): .*requests per second'; }

"$repo/tests/images/compat.sh" redis "$work/layout-redis" >/dev/null
X load -q -i "$work/layout-redis" >/dev/null
X run -d --name rd --cpus "${CPUS:-1}" -p 6379:6379 hx-compat/redis:test >/dev/null
wait_for C redis-cli -h "$H" -p 6379 ping
hx_out="$(rb 6379)"
X rm -f rd >/dev/null

r="$(rootfs redis)"
ip netns exec "$host" chroot "$r" redis-server --port 6380 --protected-mode no --save '' >/dev/null 2>&1 &
pids+=($!)
wait_for C redis-cli -h "$H" -p 6380 ping
nat_out="$(rb 6380)"

accel="$(cat "$work/store/assets"/kvm-probe-* 2>/dev/null | head -n1 || echo tcg)"
qv="$(qemu-system-x86_64 --version | awk 'NR==1 {print $4}')"
echo "| redis-benchmark -q -n $n -t set,get from a client namespace | native req/s | native p50 | hx req/s | hx p50 | hx / native |"
echo "|---|---|---|---|---|---|"
for op in SET GET; do
    nr="$(awk -v o="$op:" '$1 == o {print $2}' <<<"$nat_out")"
    np="$(grep "^$op:" <<<"$nat_out" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1 ms/p')"
    hr="$(awk -v o="$op:" '$1 == o {print $2}' <<<"$hx_out")"
    hp="$(grep "^$op:" <<<"$hx_out" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1 ms/p')"
    ratio="$(awk -v a="$hr" -v b="$nr" 'BEGIN {printf "%.3f", a / b}')"
    echo "| $op (hx: QEMU $qv, $accel, ${CPUS:-1} vCPU) | $nr | $np | $hr | $hp | $ratio |"
done

[ "${MARIADB:-}" = 1 ] || exit 0
command -v mysqlslap >/dev/null || { echo "bench: mysqlslap is needed (apt-get install mariadb-client)" >&2; exit 1; }
slap() {
    C mysqlslap -h "$H" -P "$1" -uroot -pbench --concurrency=4 --iterations=1 \
        --number-of-queries=2000 --auto-generate-sql --auto-generate-sql-load-type=mixed \
        --auto-generate-sql-add-autoincrement 2>/dev/null \
        | awk '/Average number of seconds to run all queries/ {print $(NF-1)}'
}
"$repo/tests/images/compat.sh" mariadb "$work/layout-mariadb" >/dev/null
X load -q -i "$work/layout-mariadb" >/dev/null
X run -d --name db -m 512m --cpus "${CPUS:-1}" -p 3306:3306 -e MARIADB_ROOT_PASSWORD=bench hx-compat/mariadb:test >/dev/null
wait_for C mariadb -h "$H" -P 3306 -uroot -pbench -e 'select 1'
hx_s="$(slap 3306)"
X rm -f db >/dev/null

# Native: the image's own entrypoint and mariadbd, chroot on the host, port 3307.
m="$(rootfs mariadb)"
ip netns exec "$host" chroot "$m" env MARIADB_ROOT_PASSWORD=bench docker-entrypoint.sh mariadbd --port 3307 >"$work/native-mariadb.log" 2>&1 &
pids+=($!)
wait_for C mariadb -h "$H" -P 3307 -uroot -pbench -e 'select 1'
nat_s="$(slap 3307)"
ratio="$(awk -v a="$hx_s" -v b="$nat_s" 'BEGIN {printf "%.3f", b / a}')"
echo
echo "| mysqlslap --concurrency=4 --number-of-queries=2000 --auto-generate-sql (mixed) | native s | hx s | hx speed / native |"
echo "|---|---|---|---|"
echo "| mariadb (hx: -m 512m, ${CPUS:-1} vCPU) | $nat_s | $hx_s | $ratio |"
