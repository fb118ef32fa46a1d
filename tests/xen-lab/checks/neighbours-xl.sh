#!/bin/bash
# The hx-free baseline of checks/hostile-neighbours.sh, run by hand (docs/xen-lab.md, "Known lab
# faults"): the same shapes of load with xl only, no hx process anywhere. ROUNDS times, per load:
#   none     nothing else running (the control),
#   idle     a domain that only sleeps (like exec.sh's container beside its timed runs),
#   console  a domain writing ~12 MB to its console (xenconsoled logs it, as the lab's dom0 runs it),
#   cpu      dom0 busy on both vCPUs (sha256sum loops),
# a neighbour `xl create` of a busybox initramfs that checksums its own busybox and
# a 4 MiB file of its initramfs, prints them and powers off; dom0 checksums a file of its own
# meanwhile. Any crash, wrong checksum or missing line counts as a failure. LOADS picks the loads
# (default "none console cpu"), TYPES the domain types (default "pvh pv").
#   tests/xen-lab/run --no-suite --script tests/xen-lab/checks/neighbours-xl.sh
set -u
. /lab/lib.sh
rounds=${ROUNDS:-2}
work=$(mktemp -d)

# initrd OUT MODE: MODE=flood writes to the console and powers off; MODE=check checksums.
initrd() {
    local d
    d="$(mktemp -d)"
    mkdir -p "$d/bin" "$d/dev" "$d/proc"
    cp /bin/busybox "$d/bin/busybox"
    head -c 4194304 /dev/urandom > "$d/blob"
    if [ "$2" = idle ]; then
        printf '#!/bin/busybox sh\n/bin/busybox sleep 100000\n' > "$d/init"
    elif [ "$2" = flood ]; then
        cat > "$d/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox yes "plain text line padding padding padding padding" | /bin/busybox head -c 12000000 > /dev/hvc0
/bin/busybox poweroff -f
EOF
    else
        cat > "$d/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
echo "NB-SUM $(/bin/busybox sha256sum /bin/busybox /blob | /bin/busybox cut -c1-16 | /bin/busybox tr '\n' ' ')"
echo NB-DONE
/bin/busybox poweroff -f
EOF
    fi
    chmod +x "$d/init"
    (cd "$d" && find . | cpio --quiet -o -H newc -R 0:0) | gzip -1 > "$1"
    expected="$(sha256sum /bin/busybox "$d/blob" | cut -c1-16 | tr '\n' ' ')"
    rm -rf "$d"
}
initrd "$work/idle.cpio.gz" idle
initrd "$work/flood.cpio.gz" flood
initrd "$work/nb.cpio.gz" check
want="NB-SUM $expected"
cfg() { # NAME RAMDISK TYPE
    local kernel="$HX_LIB/vmlinux"
    [ "$3" = pv ] && kernel="$HX_LIB/bzImage"
    cat > "$work/$1.cfg" <<EOF
name = "$1"
type = "$3"
kernel = "$kernel"
ramdisk = "$2"
extra = "console=hvc0 quiet panic=-1"
memory = 128
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
EOF
}
head -c 33554432 /dev/urandom > "$work/dom0blob"
dom0sum="$(sha256sum "$work/dom0blob" | cut -c1-64)"
failed=0 total=0
# A heartbeat: where things stand every 30 s, so a wedged round shows what it waits for.
(while sleep 30; do
    echo "    [heartbeat $(cut -d' ' -f1 /proc/uptime)s: $(timeout 10 xl list 2>&1 | awk 'NR>1{printf "%s(%s) ", $1, $5}')| $(ps -eo etime,args | grep -E '^ *[0-9:]+ (xl|timeout|sha256sum)' | grep -v grep | head -4 | tr -s ' ' | tr '\n' ';' | cut -c1-200)]"
done) & heartbeat=$!
for type in ${TYPES:-pvh pv}; do
    cfg idle "$work/idle.cpio.gz" "$type"
    cfg flood "$work/flood.cpio.gz" "$type"
    cfg nb "$work/nb.cpio.gz" "$type"
    for r in $(seq "$rounds"); do
        for load in ${LOADS:-none console cpu}; do
            pids=()
            case $load in
                idle)
                    timeout -s KILL 60 xl create -q "$work/idle.cfg" >/dev/null 2>&1 || echo "    idle: xl create failed"
                    sleep 5;;
                console)
                    rm -f "$CONSOLE_DIR/guest-flood.log"
                    timeout -s KILL 60 xl create -q "$work/flood.cfg" >/dev/null 2>&1 || echo "    flood: xl create failed"
                    sleep 5;;
                cpu)
                    for _ in 1 2; do (while :; do sha256sum "$work/dom0blob" > /dev/null; done) & pids+=($!); done
                    sleep 2;;
            esac
            t0=$(now)
            rm -f "$CONSOLE_DIR/guest-nb.log"
            timeout -s KILL 60 xl create -q "$work/nb.cfg" > /dev/null 2> "$work/nb.err"; rc=$?
            [ "$rc" = 0 ] && { domain_gone nb 90 || rc=124; }
            sleep 1
            cp "$CONSOLE_DIR/guest-nb.log" "$work/nb.out" 2>/dev/null || : > "$work/nb.out"
            got="$(tr -d '\r' < "$work/nb.out" | grep -a '^NB-SUM' | head -n1)"
            d0="$(sha256sum "$work/dom0blob" | cut -c1-64)"
            total=$((total + 1))
            verdict=ok
            if [ "$rc" != 0 ] || [ "${got% }" != "${want% }" ] || [ "$d0" != "$dom0sum" ]; then
                verdict=FAILED; failed=$((failed + 1))
            fi
            echo "$type round $r beside $load: $verdict (xl exit $rc after $(elapsed "$t0")s) guest '$(printf %s "$got" | cut -c1-60 | cat -v)' dom0 $([ "$d0" = "$dom0sum" ] && echo same || echo DIFFERENT)"
            if [ "$verdict" != ok ]; then
                tr -d '\r' < "$work/nb.out" | tail -n 15 | cut -c1-200 | cat -v | sed 's/^/    | /'
                head -c 400 "$work/nb.err" | cat -v | sed 's/^/    ! /'
                dmesg | grep -iE 'segfault|general protection' | tail -n 3
            fi
            timeout -s KILL 60 xl destroy nb >/dev/null 2>&1
            for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
            pkill -f "sha256sum $work/dom0blob" 2>/dev/null
            timeout -s KILL 60 xl destroy flood >/dev/null 2>&1
            timeout -s KILL 60 xl destroy idle >/dev/null 2>&1
            [ "$load" = console ] && echo "    (flood console log: $(stat -c %s "$CONSOLE_DIR/guest-flood.log" 2>/dev/null) bytes)"
            rm -f "$CONSOLE_DIR/guest-flood.log"
        done
    done
done
kill "$heartbeat" 2>/dev/null
echo "xl-only neighbours that failed: $failed of $total"
rm -rf "$work"
exit 0
