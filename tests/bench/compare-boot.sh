#!/bin/bash
# Two hx binaries side by side (e.g. before and after a change): `hx run --rm --network none
# busybox true` on the QEMU backend, alternating, one store each, same kernel and pv-init.
# Prints each binary's median and runs (ms). Usage: tests/bench/compare-boot.sh OLD_HX NEW_HX [RUNS]
# (env: HX_KERNEL, HX_INIT as for hx)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
[ $# -ge 2 ] || { sed -n '2,5s/^# \{0,1\}//p' "$0" >&2; exit 2; }
bins=("$1" "$2") runs="${3:-9}"
image="$repo/../shared/images/busybox-1.38.0-glibc"
export HX_BACKEND=qemu
work="$(mktemp -d /tmp/hx-bench-compare.XXXXXX)"
trap 'rm -rf "$work"' EXIT
for i in 0 1; do "${bins[$i]}" --root "$work/s$i" load -i "$image" >/dev/null; done
for _ in $(seq "$runs"); do
    for i in 0 1; do
        t0=$(date +%s%N)
        "${bins[$i]}" --root "$work/s$i" run --rm --network none --memory 128m busybox:1.38.0-glibc true </dev/null
        echo "$i $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$work/times"
    done
done
for i in 0 1; do
    ms=$(awk -v i="$i" '$1 == i {print $2}' "$work/times" | sort -n)
    echo "${bins[$i]}: median $(echo "$ms" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms; runs: $(awk -v i="$i" '$1 == i {printf "%s ", $2}' "$work/times")"
done
