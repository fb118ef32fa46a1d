#!/bin/bash
# nginx on Xen versus the same nginx directly in dom0, in one lab boot (a benchmark, not a check):
#   tests/xen-lab/run --no-suite --script tests/xen-lab/nginx-bench.sh --image nginx=LAYOUT
# (LAYOUT from tests/images/nginx.sh). wrk runs in a client network namespace over a veth, as
# another machine's traffic would arrive: veth → nftables DNAT → hx0 → vif → netfront → guest
# for `hx run -d -p 8080:80 nginx` (PVH, then PV: TYPES, 1 vCPU); the baseline is the image's own nginx binary
# and configuration, chroot'ed in dom0. Rounds alternate. Prints a markdown table.
set -u
rounds="${ROUNDS:-3}" secs="${SECS:-10}" conns="${CONNS:-16}" types="${TYPES:-pvh pv}"
layout="$(awk '$1 ~ /^nginx/ {print $2; exit}' /lab/images.list)"
[ -n "$layout" ] || { echo "no nginx image: --image nginx=LAYOUT"; exit 1; }

ip netns add client
ip link add veth-h type veth peer name veth-c
ip link set veth-c netns client
ip addr add 192.168.77.1/24 dev veth-h; ip link set veth-h up
ip -n client addr add 192.168.77.2/24 dev veth-c; ip -n client link set veth-c up; ip -n client link set lo up

# The image's rootfs for the native run: its layers, in order.
root=/root/nginx-rootfs
mkdir -p "$root"
manifest="$(jq -r '.manifests[0].digest' "$layout/index.json" | sed 's/^sha256://')"
for l in $(jq -r '.layers[].digest' "$layout/blobs/sha256/$manifest" | sed 's/^sha256://'); do
    tar -C "$root" -xf "$layout/blobs/sha256/$l"
done
mount --bind /dev "$root/dev"; mount -t proc proc "$root/proc"

wait_http() {
    for _ in $(seq 1 240); do
        ip netns exec client curl -sf -m 2 -o /dev/null "$1" && return 0
        sleep 0.5
    done
    echo "$1 did not answer"; return 1
}
measure() { # URL → "RPS P99"
    ip netns exec client wrk -t1 -c"$conns" -d"${secs}s" --latency "$1" > /tmp/wrk.out 2>&1
    echo "$(awk '/^Requests\/sec:/ {print $2}' /tmp/wrk.out) $(awk '$1 == "99%" {print $2}' /tmp/wrk.out)"
}

rows=()
for r in $(seq 1 "$rounds"); do
    hx_cols=""
    for t in $types; do
        hx run -d --name web --type "$t" -p 8080:80 nginx >/dev/null || { echo "hx run --type $t failed"; exit 1; }
        wait_http http://192.168.77.1:8080/ || exit 1
        read -r rps p99 < <(measure http://192.168.77.1:8080/)
        hx rm -f web >/dev/null
        echo "round $r: hx --type $t: $rps req/s (p99 $p99)"
        hx_cols="$hx_cols $rps $p99"
    done

    chroot "$root" nginx -g 'daemon off;' >/dev/null 2>&1 &
    pid=$!
    wait_http http://192.168.77.1:80/ || exit 1
    read -r nat_rps nat_p99 < <(measure http://192.168.77.1:80/)
    kill "$pid"; wait "$pid" 2>/dev/null
    echo "round $r: native $nat_rps req/s (p99 $nat_p99)"
    row="| $r | $nat_rps | $nat_p99 |"
    set -- $hx_cols
    while [ $# -ge 2 ]; do
        row="$row $1 | $2 | $(awk -v a="$1" -v b="$nat_rps" 'BEGIN {printf "%.2f", a / b}') |"
        shift 2
    done
    rows+=("$row")
done
umount "$root/proc" "$root/dev"

head="| round | dom0 native req/s | p99 |" sep="|---|---|---|"
for t in $types; do head="$head hx $t req/s | p99 | / native |"; sep="$sep---|---|---|"; done
echo "$head"; echo "$sep"
printf '%s\n' "${rows[@]}"
