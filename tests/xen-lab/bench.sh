#!/bin/bash
# The Xen benchmark (issue 4), run by /init inside dom0 with `tests/xen-lab/run --bench`.
# Per guest type: `hx run --rm busybox true` against `xl create -F` of an equivalent domain (same
# kernel, 128 MiB, 1 vCPU, the same erofs rootfs and a config-sized second disk through blkback,
# an initramfs whose /init powers off at once), each timed from the command's start until it
# returns with the domain gone. Runs alternate; medians. xenstore's @introduceDomain and
# @releaseDomain events split each run into: start -> domain introduced (config, domain
# creation), introduced -> released (devices, boot, workload, power-off), released -> command
# returns (teardown). Prints the table as HXLAB-BENCH lines.
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

events="$work/events"
: > "$events"
watchers=()
for ev in @introduceDomain @releaseDomain; do
    xenstore-watch "$ev" > >(while read -r _; do echo "$(now) $ev" >> "$events"; done) &
    watchers+=($!)
done
sleep 2   # each watch fires once when it is set up

# timed_run OUT CMD...: appends "total create run teardown" (seconds) to OUT, or returns 1.
timed_run() {
    local out="$1" t0 t1 intro rel
    shift
    t0="$(now)"
    "$@" >/dev/null 2>"$work/err" || return 1
    t1="$(now)"
    intro="$(awk -v t="$t0" '$2=="@introduceDomain" && $1>t {print $1; exit}' "$events")"
    rel="$(awk -v t="${intro:-$t0}" '$2=="@releaseDomain" && $1>t {print $1; exit}' "$events")"
    [ -n "$intro" ] && [ -n "$rel" ] || { echo "no xenstore domain events" > "$work/err"; return 1; }
    echo "$(elapsed "$t0" "$t1") $(elapsed "$t0" "$intro") $(elapsed "$intro" "$rel") $(elapsed "$rel" "$t1")" >> "$out"
}
xl_run() { timeout 300 xl create -F "$1" && domain_gone "$2" 10; }
# Until the warm pool of domain type $1 holds a domain and its filler is gone.
wait_pool() {
    local i
    for ((i = 0; i < 300; i++)); do
        HX_WARM=on hx system template ls 2>/dev/null | awk -v a="xen-$1" '$4 == a && $5 ~ /^pool:[1-9]/ {f = 1} END {exit !f}' &&
            ! pgrep -f __xen-warm-fill >/dev/null && { sleep 1; return 0; }
        sleep 1
    done
    return 1
}

bench "| guest | command ($RUNS runs, medians, s) | total | start → domain introduced | introduced → released (devices, boot, workload, power-off) | released → returned (teardown) | totals of all runs |"
bench "|---|---|---|---|---|---|---|"
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
    # hx twice: without a NIC (the same devices as the xl domain) and with its default network.
    : > "$work/$type.xl"; : > "$work/$type.hx-none"; : > "$work/$type.hx-bridge"
    for i in $(seq "$RUNS"); do
        timed_run "$work/$type.xl" xl_run "$work/$type.cfg" "bench-$type" || { fail "bench-$type-xl" "run $i"; show < "$work/err"; }
        timed_run "$work/$type.hx-none" timeout 300 hx run --rm "${targ[@]}" --network none busybox true || { fail "bench-$type-hx" "run $i"; show < "$work/err"; }
        timed_run "$work/$type.hx-bridge" timeout 300 hx run --rm "${targ[@]}" busybox true || { fail "bench-$type-hx-net" "run $i"; show < "$work/err"; }
    done
    # Warm (docs/warm-start.md, Xen's pool): before each run the pool holds a paused domain and
    # no filler runs (its boot would compete with the timed run); the runs take it, so the
    # xenstore split above does not apply (the domain was introduced by the filler): totals.
    : > "$work/$type.hx-warm"
    HX_WARM=on hx system template rm --all >/dev/null 2>&1
    HX_WARM=on timeout 300 hx run --rm "${targ[@]}" --network none busybox true >/dev/null 2>&1   # cold; fills the pool
    for i in $(seq "$RUNS"); do
        wait_pool "$type" || { fail "bench-$type-warm" "no pool domain after 300 s"; break; }
        t0="$(now)"
        HX_WARM=on timeout 300 hx -v run --rm "${targ[@]}" --network none busybox true >/dev/null 2>"$work/err" &&
            grep -q "took pool domain" "$work/err" || { fail "bench-$type-warm" "run $i"; show < "$work/err"; continue; }
        echo "$(elapsed "$t0")" >> "$work/$type.hx-warm"
    done
    HX_WARM=on hx system template rm --all >/dev/null 2>&1
    for tool in xl hx-none hx-bridge hx-warm; do
        case "$tool" in
            xl) what="\`xl create -F\`, no NIC (/init powers off at once)";;
            hx-warm) what="\`HX_WARM=on hx run --rm --network none busybox true\`, a pool domain taken";;
            hx-none) what="\`hx run --rm --network none busybox true\`";;
            hx-bridge) what="\`hx run --rm busybox true\` (vif on the hx0 bridge)";;
        esac
        row="| $type | $what"
        for col in 1 2 3 4; do row="$row | $(awk -v c="$col" '{print $c}' "$work/$type.$tool" | median)"; done
        bench "$row | $(awk '{printf "%s ", $1}' "$work/$type.$tool")|"
    done
    xl_med="$(awk '{print $1}' "$work/$type.xl" | median)"
    none_med="$(awk '{print $1}' "$work/$type.hx-none" | median)"
    bridge_med="$(awk '{print $1}' "$work/$type.hx-bridge" | median)"
    # Inside the guest: its uptime when pv-init exec'd the workload (kernel boot + pv-init's
    # setup), from the status log of runs kept without --rm (not timed, so --rm's runs above
    # stay what a user types).
    : > "$work/$type.uptime"
    for i in 1 2 3; do
        timeout 300 hx run --network none "${targ[@]}" --name "bench-up-$type-$i" busybox true >/dev/null 2>&1 || continue
        dir="$(hx inspect "bench-up-$type-$i" 2>/dev/null | jq -r '.[0].Files.Dir // empty')"
        [ -n "$dir" ] && jq -r 'select(.event == "started") | .uptime_ms / 1000' "$dir/status.log" 2>/dev/null >> "$work/$type.uptime"
        hx rm -f "bench-up-$type-$i" >/dev/null 2>&1
    done
    bench "| $type | guest uptime when the workload was exec'd (kernel boot + pv-init), hx --network none | $(median < "$work/$type.uptime") | | | | $(tr '\n' ' ' < "$work/$type.uptime")|"
    complete=1
    for f in xl hx-none hx-bridge; do [ "$(wc -l < "$work/$type.$f")" = "$RUNS" ] || complete=0; done
    if [ "$complete" = 1 ]; then
        bench "| $type | ratio hx (--network none) / xl (target ≤ 0.5) | $(awk -v a="$none_med" -v b="$xl_med" 'BEGIN{printf "%.2f×", a/b}') | | | | |"
        bench "| $type | ratio hx (bridge) / xl | $(awk -v a="$bridge_med" -v b="$xl_med" 'BEGIN{printf "%.2f×", a/b}') | | | | |"
        warm_med="$(awk '{print $1}' "$work/$type.hx-warm" | median)"
        bench "| $type | ratio warm hx / xl (target ≤ 0.1) | $(awk -v a="$warm_med" -v b="$xl_med" 'BEGIN{printf "%.2f×", a/b}') | | | | |"
        bench "| $type | warm against cold hx, --network none (target ≥ 10× faster) | $(awk -v a="$none_med" -v b="$warm_med" 'BEGIN{printf "%.2f× faster", a/b}') | | | | |"
        pass "bench-$type" "xl $xl_med s, hx $none_med s without a NIC, $bridge_med s with one"
    fi
done
kill "${watchers[@]}" 2>/dev/null
