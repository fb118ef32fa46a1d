#!/bin/bash
# The lab's built-in suite, run by /init inside dom0. Each check prints one result line
# (HXLAB-RESULT PASS|FAIL name ...), with the evidence indented under a failure.
#  1. xl-level proof, independent of hx's Xen backend: the hyper kernel boots under `xl create`
#     as PVH (vmlinux) and PV (bzImage), with a blkback disk the guest sees, reads and writes.
#  2. hx on Xen (issue 4), once with PVH (the default) and once with --type pv.
set -u
. /lab/lib.sh
work=/tmp/suite
mkdir -p "$work"
guest_initrd "$work/guest.cpio.gz"

# --- 1. xl create with the hyper kernel --------------------------------------------------------
xl_guest() {
    local type="$1" kernel="$2" name="xl-$1-$RANDOM" disk cfg log t0 out
    disk="$work/$name.img" cfg="$work/$name.cfg" log="$CONSOLE_DIR/guest-$name.log"
    truncate -s 16M "$disk"
    printf 'hx-lab-disk-ok!!' | dd of="$disk" conv=notrunc status=none
    cat > "$cfg" <<EOF
name = "$name"
type = "$type"
kernel = "$kernel"
ramdisk = "$work/guest.cpio.gz"
extra = "console=hvc0 panic=-1"
memory = 128
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
disk = [ "format=raw,vdev=xvda,access=rw,target=$disk" ]
EOF
    t0="$(now)"
    if ! out="$(xl create "$cfg" 2>&1)"; then
        fail "xl-$type-boot" "xl create failed"; echo "$out" | show; return
    fi
    if ! domain_gone "$name" 180; then
        fail "xl-$type-boot" "domain still running after 180 s"; show < "$log"
        xl destroy "$name" 2>/dev/null; return
    fi
    local secs; secs="$(elapsed "$t0")"
    # The log is read after the domain is gone: the guest may finish between two polls.
    if grep -q HXGUEST-DONE "$log" 2>/dev/null; then
        pass "xl-$type-boot" "$kernel, create to domain gone ${secs}s"
    else
        fail "xl-$type-boot" "no HXGUEST-DONE on the guest console ($kernel)"
        { show 40 < "$log"; xl dmesg | tail -20 | show; } 2>&1
        return
    fi
    if grep -q "HXGUEST-XVDA size=32768 devtype=vbd head=hx-lab-disk-ok!!" "$log"; then
        pass "xl-$type-blkback-read" "guest saw /dev/xvda as a xen vbd with dom0's bytes"
    else
        fail "xl-$type-blkback-read" "$(grep HXGUEST-XVDA "$log")"
    fi
    if [ "$(dd if="$disk" bs=4096 skip=1 count=1 status=none | head -c 16)" = written-by-guest ]; then
        pass "xl-$type-blkback-write" "dom0 read back the guest's write"
    else
        fail "xl-$type-blkback-write" "the guest's write did not reach the disk image"
    fi
    rm -f "$disk"
}
xl_guest pvh "$HX_LIB/vmlinux"
xl_guest pv "$HX_LIB/bzImage"

# --- 2. hx on Xen --------------------------------------------------------------------------------
HX_TIMEOUT=150   # a PVH run takes ~20-30 s under TCG; a hang must not eat the CI budget
hxt() { timeout -k 5 "$HX_TIMEOUT" hx "$@"; }

# check NAME WANT_RC WANT_STDOUT HX-ARGS...: runs hx (WANT_STDOUT "-" = don't care).
check() {
    local name="$1" want_rc="$2" want_out="$3" out rc
    shift 3
    out="$(hxt "$@" 2>"$work/stderr")"; rc=$?
    if [ "$rc" = "$want_rc" ] && { [ "$want_out" = - ] || [ "$out" = "$want_out" ]; }; then
        pass "$name"
    else
        fail "$name" "\`hx ${*}\` exit $rc (want $want_rc), stdout '$(echo "$out" | head -c 200)'"
        show 15 < "$work/stderr"
    fi
}

# xl's view of a domain's state letters (r b p s c d), independent of hx.
xl_state() { xl list "$1" 2>/dev/null | awk 'NR==2{print $5}'; }

hx_suite() {
    local type="$1" targ=() name dom id domid json out
    [ "$type" = pv ] && targ=(--type pv)
    check "hx-$type-run-echo" 0 hello-from-xen run --rm "${targ[@]}" busybox echo hello-from-xen
    check "hx-$type-run-exit-3" 3 - run --rm "${targ[@]}" busybox sh -c 'exit 3'
    check "hx-$type-run-exit-0" 0 "" run --rm "${targ[@]}" busybox true

    # The rootfs reaches the guest through blkback/blkfront: xvda is a Xen vbd, no virtio.
    out="$(hxt run --rm "${targ[@]}" busybox sh -c 'cat /sys/block/xvda/device/devtype; cat /sys/block/xvda/device/nodename; ls /sys/block; test -x /bin/busybox && echo image-files-ok' 2>&1)"
    if echo "$out" | grep -qx vbd && echo "$out" | grep -q '^device/vbd/' && echo "$out" | grep -qx image-files-ok && ! echo "$out" | grep -q '^vd'; then
        pass "hx-$type-rootfs-xen-vbd"
    else
        fail "hx-$type-rootfs-xen-vbd" "guest did not see its rootfs as a xen vbd"; echo "$out" | show
    fi

    # A detached container that writes to its console every second: list, domid, pause, console.
    name="lab-$type-$RANDOM"
    id="$(hxt run -d "${targ[@]}" --name "$name" busybox sh -c 'while :; do echo console-tick > /dev/console; sleep 1; done' 2>"$work/stderr")"
    if [ -z "$id" ]; then
        fail "hx-$type-run-detached" "no container id"; show < "$work/stderr"
    else
        pass "hx-$type-run-detached"
        # Domains are named after their container; container_id ties the domain to it.
        json="$(hxt list --json 2>"$work/stderr")"
        dom="$(echo "$json" | jq -r --arg id "$id" '[.[] | select(.container_id == $id)][0].name // empty' 2>/dev/null)"
        domid="$(echo "$json" | jq -r --arg id "$id" '[.[] | select(.container_id == $id)][0].domid // empty' 2>/dev/null)"
        if [ "$dom" = "$name" ] && [ "$(xl domid "$dom" 2>/dev/null)" = "$domid" ]; then
            pass "hx-$type-list-json" "domain $dom id $domid, as xl says"
        else
            fail "hx-$type-list-json" "no entry named $name with container_id $id and xl's domain id"
            { echo "$json"; cat "$work/stderr"; xl list; } | show
            dom="$name"
        fi
        check "hx-$type-domid" 0 "$(xl domid "$dom" 2>/dev/null)" domid "$dom"
        if vbd="$(xenstore-list "/local/domain/0/backend/vbd/$(xl domid "$dom" 2>/dev/null)" 2>/dev/null)" && [ -n "$vbd" ]; then
            pass "hx-$type-blkback-backend" "vbd backends $(echo $vbd)"
        else
            fail "hx-$type-blkback-backend" "no vbd backend in xenstore for $dom"
        fi

        paused() { hxt list --json "$dom" 2>/dev/null | jq -r '.[0].paused' 2>/dev/null; }
        # An hx container: docker's pause (prints the name; `hx ps` says Paused), on its domain.
        ps_paused() { hxt ps | grep -F " $dom" | grep -c '(Paused)'; }
        if [ "$(hxt pause "$dom" 2>"$work/stderr")" = "$dom" ] && [[ "$(xl_state "$dom")" == *p* ]] && [ "$(paused)" = true ] && [ "$(ps_paused)" = 1 ]; then
            pass "hx-$type-pause" "xl state $(xl_state "$dom"), hx ps Paused"
        else
            fail "hx-$type-pause" "xl state '$(xl_state "$dom")', hx list paused=$(paused), hx ps Paused lines $(ps_paused)"; show < "$work/stderr"
        fi
        if [ "$(hxt unpause "$dom" 2>"$work/stderr")" = "$dom" ] && [[ "$(xl_state "$dom")" != *p* ]] && [ "$(paused)" = false ] && [ "$(ps_paused)" = 0 ]; then
            pass "hx-$type-unpause" "xl state $(xl_state "$dom")"
        else
            fail "hx-$type-unpause" "xl state '$(xl_state "$dom")', hx list paused=$(paused), hx ps Paused lines $(ps_paused)"; show < "$work/stderr"
        fi

        # hx console may want a terminal, as xl console does: give it a pty and read for 8 s.
        timeout -k 2 8 script -qfec "hx console $dom" /dev/null < <(sleep 10) > "$work/console.out" 2>&1
        if grep -q console-tick "$work/console.out"; then
            pass "hx-$type-console"
        else
            fail "hx-$type-console" "no console-tick from the guest in 8 s"; show < "$work/console.out"
        fi

        if hxt destroy "$dom" 2>"$work/stderr" && domain_gone "$dom" 30; then
            pass "hx-$type-destroy"
        else
            fail "hx-$type-destroy" "domain $dom still there"; show < "$work/stderr"; xl destroy "$dom" 2>/dev/null
        fi
        hxt rm -f "$name" >/dev/null 2>&1
    fi

    # A run leaves nothing behind (one warm-up run first: xenstore creates some dom0
    # directories on first use and keeps them). A per-run leak shows after one run as after 20;
    # tests/xen-lab/bench.sh times runs.
    local runs=1
    hxt run --rm "${targ[@]}" busybox true >/dev/null 2>&1
    snapshot "$work/before"
    local i ok=0 t0
    t0="$(now)"
    for i in $(seq "$runs"); do
        if hxt run --rm "${targ[@]}" busybox true >/dev/null 2>"$work/stderr"; then ok=$((ok + 1)); else break; fi
    done
    local secs; secs="$(elapsed "$t0")"
    sleep 1
    snapshot "$work/after"
    if [ "$ok" = "$runs" ]; then pass "hx-$type-$runs-runs" "${secs}s in all"; else fail "hx-$type-$runs-runs" "run $((ok + 1)) failed"; show < "$work/stderr"; fi
    if [ "$ok" = 0 ]; then
        fail "hx-$type-no-leaks" "not checked: no run succeeded"
    elif diff -q "$work/before" "$work/after" >/dev/null; then
        pass "hx-$type-no-leaks" "domains, loop devices, xenstore paths, containers unchanged"
    else
        fail "hx-$type-no-leaks" "state changed across $ok runs"; diff "$work/before" "$work/after" | head -40 | show 40
    fi
}
hx_suite pvh
hx_suite pv
