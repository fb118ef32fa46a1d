#!/bin/bash
# The Xen benchmark (issue 4), run by /init inside dom0 with `tests/xen-lab/run --bench`.
# Per guest type: `hx run --rm busybox true` against `xl create -F` of an equivalent domain (same
# kernel, 128 MiB, 1 vCPU, the same erofs rootfs and a config-sized second disk through blkback,
# an initramfs whose /init powers off at once), each timed from the command's start to the
# domain being gone. Runs alternate; medians. Prints the table as HXLAB-BENCH lines.
set -u
. /lab/lib.sh
RUNS="${LAB_BENCH_RUNS:-7}"
work=/tmp/bench
mkdir -p "$work"
guest_initrd "$work/guest.cpio.gz"
median() { sort -n | awk '{a[NR]=$1} END{if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
bench() { echo "HXLAB-BENCH $*"; }

rootfs="$(ls /var/lib/hx/rootfs/*.erofs 2>/dev/null | head -1)"
[ -n "$rootfs" ] || { fail bench "no erofs rootfs in /var/lib/hx/rootfs (busybox not loaded?)"; exit 0; }
truncate -s 4096 "$work/config.img"

bench "| guest | what ($RUNS runs, median) | seconds | runs |"
bench "|---|---|---|---|"
for type in pvh pv; do
    kernel="$HX_LIB/vmlinux" targ=()
    [ "$type" = pv ] && kernel="$HX_LIB/bzImage" targ=(--type pv)
    cat > "$work/$type.cfg" <<EOF
name = "bench-$type"
type = "$type"
kernel = "$kernel"
ramdisk = "$work/guest.cpio.gz"
extra = "console=hvc0 quiet panic=-1 HXGUEST_QUICK=1"
memory = 128
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
disk = [ "format=raw,vdev=xvda,access=ro,target=$rootfs", "format=raw,vdev=xvdb,access=ro,target=$work/config.img" ]
EOF
    : > "$work/$type.xl"; : > "$work/$type.hx"
    hx_ok=1
    for i in $(seq "$RUNS"); do
        t0="$(now)"
        if timeout 300 xl create -F "$work/$type.cfg" >/dev/null 2>"$work/err" && domain_gone "bench-$type" 5; then
            elapsed "$t0" >> "$work/$type.xl"; echo >> "$work/$type.xl"
        else
            fail "bench-$type-xl" "xl create -F failed"; show < "$work/err"
        fi
        [ "$hx_ok" = 1 ] || continue
        t0="$(now)"
        if timeout 300 hx run --rm "${targ[@]}" busybox true >/dev/null 2>"$work/err"; then
            elapsed "$t0" >> "$work/$type.hx"; echo >> "$work/$type.hx"
        else
            fail "bench-$type-hx" "hx run failed"; show < "$work/err"; hx_ok=0
        fi
    done
    xl_med="$(median < "$work/$type.xl")" hx_med="$(median < "$work/$type.hx")"
    bench "| $type | \`xl create -F\` (kernel + 2 blkback disks + /init that powers off), create to domain gone | $xl_med | $(tr '\n' ' ' < "$work/$type.xl") |"
    bench "| $type | \`hx run --rm busybox true\` end to end | $hx_med | $(tr '\n' ' ' < "$work/$type.hx") |"
    if [ "$hx_ok" = 1 ] && [ "$xl_med" != n/a ]; then
        bench "| $type | ratio hx / xl (target ≤ 0.5) | $(awk -v a="$hx_med" -v b="$xl_med" 'BEGIN{printf "%.2f×", a/b}') | |"
        pass "bench-$type" "xl $xl_med s, hx $hx_med s"
    fi
done
