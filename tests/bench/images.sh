#!/bin/bash
# Images benchmark: a ~100 MB 4-layer Debian minbase image pushed to a local registry, then in one
# run: `hx pull` (+ its rootfs build) versus `skopeo copy` to a dir + tar extraction + mkfs.erofs
# (the same filesystem), and a second `hx pull` (cache hit). Prints the table for
# docs/benchmarks.md (section "Images"). Usage: [RATE=200mbit] tests/bench/images.sh [RUNS]
# RATE: the registry reached over a link of that rate (tc's tbf on the loopback of a network
# namespace the bench makes and removes), as a registry across a network is; both sides pull
# over it.
set -euo pipefail
if [ -n "${RATE:-}" ] && [ -z "${HX_BENCH_IN_NETNS:-}" ]; then
    ns="hx-bench-images-$$"
    ip netns add "$ns"
    trap 'ip netns del "$ns"' EXIT
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$RATE" burst 256kb latency 100ms
    HX_BENCH_IN_NETNS=1 ip netns exec "$ns" "$0" "$@"
    exit
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
runs="${1:-3}"
hx="${HX:-$repo/target/release/hx}"
[ -x "$hx" ] || { echo "bench: build hx first (cargo build --release -p hx-toolstack)" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hx/bench"
work="$(mktemp -d /tmp/hx-bench-images.XXXXXX)"
cleanup() { [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null; umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$cache"

# 1. The image: Debian minbase (cached), split into 4 layers, as an OCI layout.
if [ ! -f "$cache/minbase.tar" ]; then
    echo "bench: mmdebstrap minbase (once)" >&2
    mmdebstrap --quiet --variant=minbase --include=ca-certificates,perl-base,libssl3 bookworm "$cache/minbase.tmp.tar" >/dev/null
    mv "$cache/minbase.tmp.tar" "$cache/minbase.tar"
fi
mkdir -p "$work/tree" "$work/layout/blobs/sha256"
tar -xf "$cache/minbase.tar" -C "$work/tree"
layers=(); diffs=()
add_layer() { # paths...
    local t="$work/layer.tar"
    (cd "$work/tree" && tar --numeric-owner -cf "$t" "$@" && rm -rf "$@")
    local diff; diff=$(sha256sum "$t" | cut -d' ' -f1)
    gzip -1 -n "$t"
    local dg; dg=$(sha256sum "$t.gz" | cut -d' ' -f1)
    mv "$t.gz" "$work/layout/blobs/sha256/$dg"
    layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dg\",\"size\":$(stat -c %s "$work/layout/blobs/sha256/$dg")}")
    diffs+=("\"sha256:$diff\"")
}
add_layer usr/lib/x86_64-linux-gnu
add_layer usr/share
add_layer usr/bin usr/sbin
add_layer $(cd "$work/tree" && ls -A)
put() { local d; d=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1); printf '%s' "$1" > "$work/layout/blobs/sha256/$d"; echo "$d"; }
config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"bash\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$(IFS=,; echo "${diffs[*]}")]}}"
cd_=$(put "$config")
manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd_\",\"size\":${#config}},\"layers\":[$(IFS=,; echo "${layers[*]}")]}"
md=$(put "$manifest")
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$md\",\"size\":${#manifest},\"annotations\":{\"org.opencontainers.image.ref.name\":\"bench\"}}]}" > "$work/layout/index.json"
compressed=$(du -cb "$work"/layout/blobs/sha256/* | tail -1 | cut -f1)
unpacked=$(tar -tvf "$cache/minbase.tar" | awk '{s+=$3} END {print s}')

# 2. A local registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/registry" "$port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 & reg_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:bench" "docker://127.0.0.1:$port/bench/minbase:1"
ref="127.0.0.1:$port/bench/minbase:1"

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
hx_ms=(); base_ms=(); hit_ms=()
for i in $(seq "$runs"); do
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    t0=$(now); "$hx" --root "$work/store$i" pull -q "$ref" >/dev/null; t1=$(now)
    hx_ms+=("$(ms "$t0" "$t1")")
    t0=$(now); "$hx" --root "$work/store$i" pull -q "$ref" >/dev/null; t1=$(now)
    hit_ms+=("$(ms "$t0" "$t1")")
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    t0=$(now)
    skopeo copy --quiet --src-tls-verify=false "docker://$ref" "dir:$work/base$i"
    mkdir -p "$work/base$i.tree"
    for l in $(jq -r '.layers[].digest' "$work/base$i/manifest.json" | cut -d: -f2); do
        tar -xzf "$work/base$i/$l" -C "$work/base$i.tree"
    done
    mkfs.erofs --quiet "$work/base$i.erofs" "$work/base$i.tree"
    t1=$(now)
    base_ms+=("$(ms "$t0" "$t1")")
    rm -rf "$work/base$i" "$work/base$i.tree" "$work/base$i.erofs" "$work/store$i"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(median "${hx_ms[@]}"); b=$(median "${base_ms[@]}"); c=$(median "${hit_ms[@]}")
ratio=$(awk -v h="$h" -v b="$b" 'BEGIN {printf "%.2f", h/b}')
echo "$(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores, median of $runs runs, page cache dropped before each cold run; registry link: ${RATE:-loopback, unlimited}"
echo "$((compressed / 1000000)) MB compressed, $((unpacked / 1000000)) MB unpacked"
echo "| \`hx pull\` + rootfs build (erofs) | $h | ${hx_ms[*]} |"
echo "| baseline: \`skopeo copy\` to dir + \`tar -x\` each layer + \`mkfs.erofs\` | $b | ${base_ms[*]} |"
echo "| ratio hx / baseline | $ratio | |"
echo "| second \`hx pull\` (cache hit) | $c | ${hit_ms[*]} |"
