#!/bin/bash
# Volumes on Xen, run inside the lab's dom0 by tests/run-all.sh (`tests/xen-lab/run --script ...`):
# a read-write host directory over Xen's 9pfs (libxl starts QEMU in dom0 as its backend) is live
# both ways, a `:ro` one cannot be written, a named volume (an ext4 disk through blkback) keeps
# its data for the next container, a missing 9pfs backend gives a one-line error, and nothing is
# left behind: domains, loop devices, xenstore nodes, QEMU processes, containers.
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
dm=/usr/libexec/xen-qemu-system-i386
dms() { pgrep -f "^$dm" | wc -l; }
wait_for() { # SECONDS COMMAND...: until COMMAND succeeds
    n=$1; shift
    while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 1; n=$((n - 1)); done
    return 1
}

snapshot /tmp/vol-before
mkdir -p /root/rw /root/ro
echo from-host > /root/rw/h
echo read-only > /root/ro/r
hx volume create keep >/dev/null && ok "volume create keep" || bad "volume create"

# One detached container for the host directories and the named volume: each run costs ~20 s of
# nested TCG.
t0=$(date +%s)
hx run -d --name vols -v /root/rw:/data -v /root/ro:/ro:ro -v keep:/v busybox sh -c '
    cat /data/h; echo from-guest > /data/g; mkdir -p /data/sub && echo deep > /data/sub/f
    cp /bin/busybox /data/suid && chmod 4755 /data/suid && mknod /data/blk b 8 0 && ls -ln /data/suid /data/blk
    grep " /data " /proc/mounts
    touch /ro/x 2>/dev/null && echo RO-WRITABLE || echo ro-refused; cat /ro/r
    echo kept > /v/f; sync; echo ready
    while :; do [ -f /data/live ] && { cat /data/live; rm /data/live; }; sleep 1; done' \
    && ok "run -d with -v DIR:/data -v DIR:/ro:ro -v keep:/v" || bad "run -d"
logs_have() { hx logs vols 2>/dev/null | grep -q "$1"; }
diag() {
    echo "--- monitor.log"; cat /var/lib/hx/containers/*/monitor.log 2>&1 | tail -30
    echo "--- status"; cat /var/lib/hx/containers/*/status.log 2>&1 | tail -10
    echo "--- qemu-dm logs"; tail -20 /var/log/xen/qemu-dm-* 2>&1
    echo "--- xl dmesg"; xl dmesg | tail -10
}
if wait_for 120 logs_have ready; then ok "container ready $(( $(date +%s) - t0 )) s after run"; else bad "container never got ready"; diag; fi
hx logs vols
logs_have from-host && ok "guest reads the host's file" || bad "guest did not read /data/h"
[ "$(cat /root/rw/g 2>/dev/null)" = from-guest ] && ok "host sees the guest's write" || bad "host: /root/rw/g is '$(cat /root/rw/g 2>&1)'"
[ "$(cat /root/rw/sub/f 2>/dev/null)" = deep ] && ok "host sees a directory the guest made" || bad "host: /root/rw/sub/f missing"
hx logs vols | grep -q '^-rwsr-xr-x .* /data/suid$' && ok "the guest sees its setuid file" || bad "guest: $(hx logs vols | grep /data/suid)"
if [ -f /root/rw/suid ] && [ ! -u /root/rw/suid ] && [ -f /root/rw/blk ] && [ ! -b /root/rw/blk ]; then
    ok "the host gets a plain file without setuid, no device node ($(stat -c '%A' /root/rw/suid /root/rw/blk | tr '\n' ' '))"
else
    bad "planted on the host: $(ls -ln /root/rw/suid /root/rw/blk 2>&1 | tr '\n' ' ')"
fi
hx logs vols | grep -q ' /data 9p .*trans=xen' && ok "/data is 9p over Xen's transport" || bad "/data mount: $(hx logs vols | grep ' /data ')"
[ "$(dms)" = 1 ] && ok "one QEMU serves the container's 9pfs" || bad "$(dms) QEMU processes"
echo "INFO 9pfs QEMU RSS: $(ps -o rss= -p "$(pgrep -f "^$dm" | head -1)" 2>/dev/null) KiB"
logs_have ro-refused && logs_have read-only && ok ":ro directory readable, not writable" || bad ":ro directory"
[ ! -e /root/ro/x ] && ok "host :ro directory untouched" || bad "/root/ro/x exists"
echo "written-live" > /root/rw/live
if wait_for 30 logs_have written-live; then ok "guest sees a file the host writes while it runs"; else bad "live host write not seen"; fi
hx volume rm keep >/dev/null 2>&1 && bad "volume rm of an in-use volume succeeded" || ok "in-use volume refused by volume rm"
hx stop vols >/dev/null && ok "stop" || bad "stop"
hx rm vols >/dev/null && ok "rm" || bad "rm"
[ "$(dms)" = 0 ] && ok "QEMU gone with the domain" || bad "$(dms) QEMU processes left"

t0=$(date +%s.%N)
out=$(hx run --rm -v keep:/v busybox cat /v/f 2>&1)
echo "INFO hx run --rm with a named volume: $(elapsed "$t0") s"
[ "$out" = kept ] && ok "named volume data seen by the next container" || bad "named volume: '$out'"
hx volume rm keep >/dev/null && ok "volume rm" || bad "volume rm"

# Start cost of a read-write share (the dom0 QEMU), same boot, informational.
for i in 1 2; do
    t0=$(now); hx run --rm --network none busybox true; plain=$(elapsed "$t0")
    t0=$(now); hx run --rm --network none -v /root/rw:/data busybox true; shared=$(elapsed "$t0")
    echo "INFO hx run --rm busybox true: ${plain} s; with a 9pfs share: ${shared} s"
done

# Without QEMU in dom0 a read-write host directory is refused before any domain exists.
mv "$dm" "$dm.away"
out=$(hx run --rm -v /root/rw:/data busybox true 2>&1); rc=$?
mv "$dm.away" "$dm"
case "$rc:$out" in
    125:*qemu-system-xen*) ok "no 9pfs backend: exit 125, '$out'";;
    *) bad "no 9pfs backend: exit $rc, '$out'";;
esac
[ "$(echo "$out" | wc -l)" = 1 ] && ok "one-line error" || bad "error has $(echo "$out" | wc -l) lines"

snapshot /tmp/vol-after
# Parents libxl makes with the first domain of a boot and keeps (empty) are not leaks.
for f in /tmp/vol-before /tmp/vol-after; do grep -v -x -e /libxl -e /vm -e /local/domain/0/device-model "$f" > "$f.cmp"; done
if diff /tmp/vol-before.cmp /tmp/vol-after.cmp >/dev/null; then ok "no leaks: domains, loops, xenstore, containers"; else bad "state changed"; diff /tmp/vol-before.cmp /tmp/vol-after.cmp | head -20; fi
exit $fail
