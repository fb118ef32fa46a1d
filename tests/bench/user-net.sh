#!/bin/bash
# User networks (docs/networking.md): what a container on one costs against hx0, alternating in
# one run (medians), in a network namespace the bench makes (root):
#   hx0     `hx run -d busybox sleep 60`                      (warm start, the default bridge)
#   first   `hx run -d --network bench …` on a network with no container (starts its resolver)
#   next    the same with the resolver already running
#   lookup  a guest's `nslookup` of a neighbour's name, timed inside the guest (busybox time)
# plus the resolver's RSS. Usage: tests/bench/user-net.sh [RUNS]  (env: HX_KERNEL, HX_INIT, HX)
set -euo pipefail
runs="${1:-5}"
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "bench: needs root (a network namespace)" >&2; exit 1; }
work="$(mktemp -d /tmp/hx-bench-usernet.XXXXXX)"
ns="hx-bench-usernet-$$"
ip netns add "$ns"
ip -n "$ns" link set lo up
n() { ip netns exec "$ns" "$hx" --root "$work/store" "$@"; }
cleanup() {
    n rm -f $(n ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    n network prune -f >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
h load -i "$busybox_dir" >/dev/null
img=busybox:1.38.0-glibc
# Templates made once, outside the figures.
n run -d --name warm0 "$img" sleep 1 >/dev/null
n network create bench >/dev/null
n run -d --name warm1 --network bench "$img" sleep 1 >/dev/null
n rm -f warm0 warm1 >/dev/null
hx0=() first=() next=() lookup=()
for i in $(seq 1 "$runs"); do
    hx0+=("$(ms n run -d --name "a$i" "$img" sleep 60)")
    first+=("$(ms n run -d --name "b$i" --network bench "$img" sleep 60)")
    next+=("$(ms n run -d --name "c$i" --network bench "$img" sleep 60)")
    t=$(n run --rm --network bench "$img" sh -c "time nslookup b$i >/dev/null" 2>&1 | awk '/real/ {print $3}')
    lookup+=("$(awk -v t="${t%s}" 'BEGIN {printf "%d", t * 1000}')")
    rss=$(ps -C hx -o rss=,args= | awk '/__net-dns/ {print $1; exit}')
    n rm -f "a$i" "b$i" "c$i" >/dev/null
done
printf '| figure | median, ms | runs |\n|---|---|---|\n'
printf '| `hx run -d` on hx0 | %s | %s |\n' "$(median "${hx0[@]}")" "${hx0[*]}"
printf '| `hx run -d --network bench`, first container (starts the resolver) | %s | %s |\n' "$(median "${first[@]}")" "${first[*]}"
printf '| the same, resolver running | %s | %s |\n' "$(median "${next[@]}")" "${next[*]}"
printf '| `nslookup NEIGHBOUR` in the guest | %s | %s |\n' "$(median "${lookup[@]}")" "${lookup[*]}"
printf 'resolver RSS: %s KiB\n' "$rss"
