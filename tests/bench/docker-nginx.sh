#!/bin/bash
# nginx published by docker (issue 11's benchmark): `docker run -d -p 8080:80 nginx` with runc
# (docker's default) against the same with `--runtime hx` (hx-runtime: a micro-VM in the
# namespace docker made), wrk from a client network namespace over a veth to docker's DNAT, in
# one run, alternating rounds. Debian's containerd and dockerd run with their own state dirs
# and sockets under a temp dir, inside a network namespace the bench makes (as
# toolstack/tests/common/docker.rs does); nothing touches the machine's interfaces.
# Usage: tests/bench/docker-nginx.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (env: HX_KERNEL,
# HX_INIT, HX (the hx binary), HX_RUNTIME (default: hx-runtime beside hx)). Needs root,
# docker.io, skopeo, wrk, mmdebstrap (the nginx image, tests/images/nginx.sh).
set -euo pipefail
rounds="${1:-3}"
secs="${2:-10}"
conns="${3:-16}"
. "$(dirname "$0")/lib.sh"
for t in wrk curl; do
    command -v "$t" >/dev/null || { echo "bench: $t is needed (apt-get install $t)" >&2; exit 1; }
done
. "$(dirname "$0")/docker-lib.sh"
docker_init "$(mktemp -d /tmp/hx-bench-dnginx.XXXXXX)" "hxbdn-$$"
client="hxbdc-$$"
cleanup() {
    docker_down
    ip netns del "$client" 2>/dev/null || true
}
trap cleanup EXIT
docker_up
ip netns add "$client"; ip -n "$client" link set lo up
ip link add hxbdn0 netns "$ns" type veth peer name hxbdc0 netns "$client"
ip -n "$ns" addr add 192.168.79.1/24 dev hxbdn0; ip -n "$ns" link set hxbdn0 up
ip -n "$client" addr add 192.168.79.2/24 dev hxbdc0; ip -n "$client" link set hxbdc0 up
"$repo/tests/images/nginx.sh" "$work/layout" >/dev/null
skopeo copy -q "oci:$work/layout" "docker-archive:$work/nginx.tar:hx-bench/nginx:1" >/dev/null
"${docker[@]}" load -q -i "$work/nginx.tar" >/dev/null

url=http://192.168.79.1:8080/
wait_http() {
    for _ in $(seq 1 240); do
        ip netns exec "$client" curl -sf -m 2 -o /dev/null "$url" && return 0
        sleep 0.5
    done
    echo "bench: $url did not answer" >&2; exit 1
}
# One round of one runtime: run, wait for the page, wrk; prints "RPS P99".
round() {
    "${docker[@]}" run -d --name web "$@" -p 8080:80 hx-bench/nginx:1 >/dev/null
    wait_http
    # The accelerator hx's QEMU got (its KVM probe decides: docs/benchmarks.md).
    pgrep -a qemu-system | grep -o -- '-accel [a-z]*' | head -n1 | cut -d' ' -f2 > "$work/accel" || true
    ip netns exec "$client" wrk -t2 -c"$conns" -d"${secs}s" --latency "$url" > "$work/wrk.out"
    "${docker[@]}" rm -f web >/dev/null
    echo "$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out") $(awk '$1 == "99%" {print $2}' "$work/wrk.out")"
}
runc_rps=(); runc_p99=(); hx_rps=(); hx_p99=()
for _ in $(seq "$rounds"); do
    read -r r p < <(round); runc_rps+=("$r"); runc_p99+=("$p")
    read -r r p < <(round --runtime hx); hx_rps+=("$r"); hx_p99+=("$p")
done
rr=$(median "${runc_rps[@]}"); hr=$(median "${hx_rps[@]}")
accel="$(cat "$work/accel" 2>/dev/null || true)"
echo "| nginx via \`docker run -d -p 8080:80\`, wrk -t2 -c$conns -d${secs}s from a client namespace ($rounds rounds, median) | requests/s | p99 latency (per round) |"
echo "|---|---|---|"
echo "| runc | $rr | ${runc_p99[*]} |"
echo "| \`--runtime hx\` (QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}')${accel:+, $accel}, 1 vCPU) | $hr | ${hx_p99[*]} |"
echo "| ratio hx / runc | $(awk -v a="$hr" -v b="$rr" 'BEGIN {printf "%.3f", a / b}') | |"
