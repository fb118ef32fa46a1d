#!/bin/bash
# xl's smaller commands on an ordinary xl.cfg domain (docs/cli.md): `hx debug-keys`,
# `hx set-parameters`, `hx dump-core`, `hx trigger`, each against the hypervisor or the domain
# and what xl's own reading of it shows; and VNC (docs/cli.md, "hx create FILE.cfg"): a PV framebuffer
# (`vfb = ['vnc=1, ...']`) served by QEMU in dom0, `hx create -V` starting a viewer on it as
# `xl create -V` does, and `hx vncviewer` (xl vncviewer). libxl runs $VNCVIEWER, else vncviewer
# (none in the lab): here a script that records its arguments and standard input (the password,
# with -autopass) and reads the server's RFB greeting. CPU pools: cpupool-create/-migrate/
# -destroy/-rename/-cpu-add/-cpu-remove on the domain and an hx container, against xl's view.
# `hx update` of a running container's memory and CPU limits, as xl list and sched-credit2 see them.
# Nothing left: domain, QEMU, xenstore nodes.
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
w=/lab/disk/work/vnc
mkdir -p "$w"
dm=/usr/libexec/xen-qemu-system-i386
dms() { pgrep -f "^$dm" | wc -l; }
snapshot /tmp/vnc-before

busybox_initramfs "$w/xv.cpio.gz" <<'EOF'
#!/bin/busybox sh
echo "XV-READY"
while :; do /bin/busybox sleep 1; done
EOF
cat > "$w/xv.cfg" <<EOF
name = "xv"
type = "pv"
kernel = "$HX_LIB/vmlinux"
ramdisk = "$w/xv.cpio.gz"
extra = "console=hvc0 panic=-1"
memory = 64
vfb = [ 'vnc=1, vnclisten=127.0.0.1, vncdisplay=7, vncunused=0' ]
EOF
cat > "$w/viewer" <<EOF
#!/bin/bash
out=$w/viewer
echo "\$*" > "\$out.args.tmp"
[ "\${2:-}" = -autopass ] && cat > "\$out.pass"
host=\${1%:*}; d=\${1##*:}
exec 3<>"/dev/tcp/\$host/\$((5900 + d))" && head -c 12 <&3 > "\$out.rfb"
mv "\$out.args.tmp" "\$out.args"
EOF
chmod +x "$w/viewer"
waitfile() { # FILE SECS
    local i
    for ((i = 0; i < $2; i++)); do [ -s "$1" ] && return 0; sleep 1; done
    return 1
}

# hx create -V: the domain made, a viewer started on its VNC server. (No vncpasswd: Debian's
# qemu-system-xen has no DES in its crypto backend, so VNC passwords fail to start QEMU, for xl
# as for hx: "Cipher backend does not support DES algorithm".)
rm -f "$w"/viewer.*
out=$(VNCVIEWER="$w/viewer" hx create -q -V "$w/xv.cfg" 2>&1); rc=$?
waitfile "$w/viewer.args" 60
[ "$rc" = 0 ] && [ "$(cat "$w/viewer.args" 2>&1)" = "127.0.0.1:7" ] && [ ! -e "$w/viewer.pass" ] \
    && [ "$(head -c 4 "$w/viewer.rfb" 2>&1)" = "RFB " ] \
    && ok "create -V: a viewer on 127.0.0.1:7 (display 7), QEMU's RFB greeting ($(cat "$w/viewer.rfb"))" \
    || bad "create -V: exit $rc '$out', args '$(cat "$w/viewer.args" 2>&1)', rfb '$(cat "$w/viewer.rfb" 2>&1)'; xenstore: $(xenstore-ls "/local/domain/$(xl domid xv 2>/dev/null)/console" 2>&1 | tr '\n' ' ')"
[ "$(dms)" = 1 ] && ok "one QEMU serves the framebuffer" || { bad "$(dms) QEMU processes"; tail -20 /var/log/xen/qemu-dm-xv.log 2>&1 | show; }
hx config xv 2>/dev/null | grep -q '"vfbs"' && ok "hx config shows the vfb" || bad "hx config: no vfbs"

# hx vncviewer (xl vncviewer) by name in the foreground; -a with no password set passes none.
rm -f "$w"/viewer.*
VNCVIEWER="$w/viewer" timeout 60 hx vncviewer -a xv; rc=$?
[ "$rc" = 0 ] && [ "$(cat "$w/viewer.args" 2>&1)" = "127.0.0.1:7" ] && [ ! -e "$w/viewer.pass" ] \
    && [ "$(head -c 4 "$w/viewer.rfb" 2>&1)" = "RFB " ] && ok "vncviewer -a xv: the viewer's exit code, 127.0.0.1:7, no password to pass" \
    || bad "vncviewer: exit $rc, args '$(cat "$w/viewer.args" 2>&1)'"

# xl dump-core: the domain's memory as an ELF core file; it runs on.
ts=$(date +%s)
hx dump-core xv "$w/xv.core"; rc=$?
size=$(stat -c %s "$w/xv.core" 2>/dev/null || echo 0)
[ "$rc" = 0 ] && [ "$(head -c 4 "$w/xv.core" | od -An -c | tr -d ' ')" = '177ELF' ] && [ "$size" -ge $((60 << 20)) ] \
    && xl list xv >/dev/null 2>&1 && ok "dump-core: an ELF core of $((size >> 20)) MiB in $(( $(date +%s) - ts )) s, the domain runs on" \
    || bad "dump-core: exit $rc, size $size, head '$(head -c 4 "$w/xv.core" | od -An -c)'"
rm -f "$w/xv.core"
out=$(hx dump-core xv /nonexistent/dir/core 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$(printf '%s\n' "$out" | tail -n 1)" == "hx: core dump of domain "* ]] \
    && ok "dump-core to an unwritable place: exit 1" || bad "dump-core /nonexistent: exit $rc: $out"

# xl trigger: an NMI reaches the guest's kernel (its console says so); a PV domain has no ACPI
# power button (exit 1); an unknown trigger: exit 1, one line.
hx trigger xv nmi; rc=$?
for _ in $(seq 30); do grep -q "NMI received" "$CONSOLE_DIR/guest-xv.log" 2>/dev/null && break; sleep 1; done
[ "$rc" = 0 ] && grep -q "NMI received" "$CONSOLE_DIR/guest-xv.log" \
    && ok "trigger xv nmi: '$(grep -m1 "NMI received" "$CONSOLE_DIR/guest-xv.log" | tr -d '\r')'" \
    || { bad "trigger nmi: exit $rc, console:"; tail -5 "$CONSOLE_DIR/guest-xv.log" 2>&1 | show; }
# (xl ignores libxl's answer and exits 0; hx reports the failure.)
out=$(hx trigger xv power 2>&1); rc=$?
xl trigger xv power >/dev/null 2>&1; xrc=$?
[ "$rc" = 1 ] && [[ "$(printf '%s\n' "$out" | tail -n 1)" == "hx: "* ]] \
    && ok "trigger power on a PV domain: exit 1 (xl: $xrc)" || bad "trigger power: hx $rc, xl $xrc: $out"
out=$(hx trigger xv bogus 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"Invalid trigger"* ]] \
    && ok "an unknown trigger: exit 1 ($out)" || bad "trigger bogus: exit $rc: $out"

# xl debug-keys: the handler's output in the hypervisor's ring ('h' lists the handlers).
before=$(xl dmesg | grep -c "'h' pressed")
hx debug-keys h; rc=$?
after=$(xl dmesg | grep -c "'h' pressed")
[ "$rc" = 0 ] && [ "$after" -gt "$before" ] && ok "debug-keys h: 'h' pressed in xl dmesg ($before -> $after)" \
    || bad "debug-keys: exit $rc, $before -> $after"
# xl set-parameters: a runtime parameter taken; an unknown one refused as xl refuses it.
hx set-parameters loglvl=all; rc=$?
[ "$rc" = 0 ] && ok "set-parameters loglvl=all" || bad "set-parameters loglvl=all: exit $rc"
out=$(hx set-parameters hx-no-such-param=1 2>&1); rc=$?
xl set-parameters hx-no-such-param=1 >/dev/null 2>&1; xrc=$?
[ "$rc" = 1 ] && [ "$xrc" != 0 ] && [[ "$(printf '%s\n' "$out" | tail -n 1)" == "hx: cannot set parameters"* ]] \
    && ok "an unknown parameter: exit 1 (xl: $xrc)" || bad "set-parameters unknown: exit $rc (xl $xrc): $out"
# Back to the lab's boot setting (tests/xen-lab/run boots Xen with loglvl=all).
hx set-parameters loglvl=all >/dev/null 2>&1

# A domain without a VNC server, and a bad vfb: one line, exit 1.
out=$(timeout 60 hx vncviewer 0 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"no VNC server"* ]] \
    && ok "vncviewer of Domain-0: exit 1 ($out)" || bad "vncviewer 0: exit $rc: $out"
out=$(hx create -q -n "$w/xv.cfg" "vfb=['vnc=1,sdl=1']" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == *"unsupported parameter \"sdl\""* ]] && ok "a vfb with sdl=1 refused, exit 1" \
    || bad "sdl vfb: exit $rc: $out"

# CPU pools (docs/cli.md): CPU 1 out of Pool-0 into a new pool, the xl.cfg domain and an hx
# container moved there and back, the pool renamed and destroyed, CPU 1 back; each state as
# xl reads it, and xl's own dry-run output and errors.
hx run -d --name cp busybox sleep 600 >/dev/null || bad "hx run -d cp"
second_cpu_on || bad "xen-hptool cpu-online 1"
if [ "$(online_cpus)" -ge 2 ]; then
    hx cpupool-cpu-remove Pool-0 1 && [ "$(hx cpupool-list -c 2>&1)" = "$(xl cpupool-list -c 2>&1)" ] \
        && xl cpupool-list -c | grep -qx 'Pool-0 *0' && ok "cpupool-cpu-remove Pool-0 1: xl lists Pool-0 on CPU 0" \
        || { bad "cpupool-cpu-remove"; xl cpupool-list -c | show; }
    h=$(hx cpupool-create -n 'name="hxp"' 'cpus="1"' 2>&1); x=$(xl cpupool-create -n 'name="hxp"' 'cpus="1"' 2>&1)
    [ "$h" = "$x" ] && ok "cpupool-create -n: same output as xl" || { bad "cpupool-create -n differs"; { echo "hx:"; echo "$h"; echo "xl:"; echo "$x"; } | show; }
    hx cpupool-create 'name="hxp"' 'cpus="1"' >/dev/null && xl cpupool-list hxp | grep -q '^hxp  *1 ' \
        && ok "cpupool-create: xl lists hxp with one CPU" || { bad "cpupool-create"; xl cpupool-list | show; }
    [ "$(hx cpupool-list 2>&1)" = "$(xl cpupool-list 2>&1)" ] && ok "cpupool-list with two pools: same as xl" || bad "cpupool-list differs"
    out=$(hx cpupool-create 'name="hxp"' 2>&1); rc=$?
    [ "$rc" = 1 ] && [ "$out" = 'hx: Pool name "hxp" already exists' ] && ok "cpupool-create of an existing name: exit 1 ($out)" \
        || bad "existing pool: exit $rc: $out"
    hx cpupool-migrate xv hxp && hx cpupool-migrate cp hxp && [ "$(xl list -c xv | awk 'NR==2 {print $NF}')" = hxp ] \
        && xl cpupool-list hxp | grep -q '^hxp .* 2$' && ok "cpupool-migrate of an xl.cfg domain and an hx container: xl counts 2 in hxp" \
        || { bad "cpupool-migrate"; xl cpupool-list | show; xl list -c | show; }
    [ "$(xl vcpu-list xv | awk 'NR==2 {print $4}')" = 1 ] && ok "xv's vCPU runs on CPU 1" || { bad "xv's vCPU"; xl vcpu-list xv | show; }
    out=$(hx cpupool-destroy hxp 2>&1); rc=$?
    [ "$rc" = 1 ] && [[ "$out" == "hx: Can't destroy cpupool 'hxp'"* ]] && xl cpupool-list hxp >/dev/null 2>&1 \
        && ok "cpupool-destroy of a pool with domains: exit 1, kept" || bad "destroy busy pool: exit $rc: $out"
    out=$(hx cpupool-migrate xv nosuch 2>&1); rc=$?
    [ "$rc" = 1 ] && [ "$out" = "hx: unknown cpupool 'nosuch'" ] && ok "cpupool-migrate to an unknown pool: exit 1 ($out)" \
        || bad "unknown pool: exit $rc: $out"
    hx cpupool-migrate xv Pool-0 && hx cpupool-migrate cp 0 && xl cpupool-list hxp | grep -q '^hxp .* 0$' \
        && ok "both back in Pool-0 (by name and by id)" || { bad "migrate back"; xl cpupool-list | show; }
    hx cpupool-rename hxp hxq && xl cpupool-list hxq >/dev/null 2>&1 && ok "cpupool-rename hxp hxq" || bad "cpupool-rename"
    hx cpupool-destroy hxq && ! xl cpupool-list hxq >/dev/null 2>&1 && ok "cpupool-destroy hxq" || bad "cpupool-destroy"
    hx cpupool-cpu-add Pool-0 1 && xl cpupool-list -c | grep -qx 'Pool-0 *0,1' && ok "cpupool-cpu-add Pool-0 1: Pool-0 on CPUs 0,1 again" \
        || { bad "cpupool-cpu-add"; xl cpupool-list -c | show; }
    second_cpu_off || bad "xen-hptool cpu-offline 1"
else
    bad "the lab's Xen has one CPU: no CPU for a second pool"
fi

# A second NIC on a bridge of dom0's (docs/cli.md): network-attach to the hx container with
# ip=ADDR/PREFIX, which its guest configures (eth1, that address; it reaches dom0 over the
# bridge); network-list as xl's; without a prefix: refused in one line, no vif made;
# network-detach. The xl.cfg domain takes one too.
ip link add hxt0 type bridge && ip addr add 10.99.0.1/24 dev hxt0 && ip link set hxt0 up
nvifs() { xl network-list "$1" 2>/dev/null | awk 'NR>1' | wc -l; }
hx network-attach cp bridge=hxt0 ip=10.99.0.2/24 && [ "$(nvifs cp)" = 2 ] && ok "network-attach cp bridge=hxt0 ip=10.99.0.2/24: a second vif" \
    || { bad "network-attach cp"; xl network-list cp 2>&1 | show; }
[ "$(hx network-list cp 2>&1)" = "$(xl network-list cp 2>&1)" ] && ok "network-list cp: same as xl" || bad "network-list cp differs"
end=$((SECONDS + 60)); while [ $SECONDS -lt $end ]; do timeout 20 hx exec cp ip addr show eth1 2>/dev/null | grep -q 'inet 10.99.0.2/24' && break; sleep 1; done
out=$(timeout 20 hx exec cp ip addr show eth1 2>&1)
[[ "$out" == *"inet 10.99.0.2/24"* ]] && [[ "$out" == *UP* ]] && ok "the guest configured eth1 with 10.99.0.2/24" || { bad "eth1 in cp"; echo "$out" | show; timeout 20 hx exec cp dmesg 2>&1 | tail -5 | show; }
timeout 30 hx exec cp ping -c 1 -W 5 10.99.0.1 >/dev/null && ok "the container reaches dom0's 10.99.0.1 over hxt0" || bad "ping 10.99.0.1 from cp over hxt0"
out=$(hx network-attach cp bridge=hxt0 ip=10.99.0.3 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"needs a prefix"* ]] && [ "$(nvifs cp)" = 2 ] \
    && ok "ip= without a prefix for a container: exit 1, no vif ($out)" || bad "no prefix: exit $rc: $out ($(nvifs cp) vifs)"
hx network-detach cp 1 && [ "$(nvifs cp)" = 1 ] && ok "network-detach cp 1" || bad "network-detach cp 1: $(nvifs cp) vifs"
n0=$(nvifs xv)
hx network-attach xv bridge=hxt0 && [ "$(nvifs xv)" = $((n0 + 1)) ] && ok "network-attach xv (an xl.cfg domain)" || bad "network-attach xv"
hx network-detach xv "$n0" && [ "$(nvifs xv)" = "$n0" ] && ok "network-detach xv $n0" || bad "network-detach xv"
ip link del hxt0
# block-detach -f (xl's force: libxl's plain remove, not the guest-cooperative one).
truncate -s 8M "$w/forced.img"
hx block-attach cp "format=raw,vdev=xvdy,access=rw,target=$w/forced.img" && [ "$(timeout 30 hx exec cp cat /sys/block/xvdy/size 2>&1)" = 16384 ] \
    && ok "block-attach cp xvdy" || bad "block-attach cp xvdy"
hx block-detach -f cp xvdy && ! xl block-list cp | awk 'NR>1 {print $1}' | grep -qx 52096 && ok "block-detach -f cp xvdy: gone from block-list" \
    || { bad "block-detach -f"; xl block-list cp | show; }
out=$(hx block-detach -f cp xvdy 2>&1); rc=$?; xl block-detach -f cp xvdy >/dev/null 2>&1; xrc=$?
[ "$rc" = 1 ] && [ "$xrc" != 0 ] && ok "block-detach -f of a missing vdev: exit 1 (xl: $xrc)" || bad "block-detach -f missing: exit $rc (xl $xrc): $out"
hx rm -f cp >/dev/null || bad "hx rm -f cp"

# hx update (docker update) on a running PVH container: the balloon target within the memory
# the domain was made with, credit2's cap and weight; refused beyond that; kept across a stop
# and start.
credit2() { xl sched-credit2 -d "$1" | awk 'NR==2 {print $3, $4}'; }
hx run -d --name up -m 256m busybox sleep 600 >/dev/null || bad "hx run -d up"
[ "$(hx update --memory 160m --cpus 0.5 --cpu-shares 512 up 2>&1)" = up ] && ok "hx update --memory 160m --cpus 0.5 --cpu-shares 512 up" || bad "hx update up"
wait_domain_mem up 160 && ok "xl list: up ballooned to $(domain_mem up) MiB" || bad "up has $(domain_mem up) MiB, not 160"
[ "$(credit2 up)" = "128 50" ] && ok "credit2: weight 128, cap 50" || bad "credit2 of up: $(credit2 up)"
kb=$(timeout 60 hx exec up awk '/^MemTotal/ {print $2}' /proc/meminfo)
[ -n "$kb" ] && [ "$kb" -le $((160 * 1024)) ] && [ "$kb" -ge $((140 * 1024)) ] && ok "the guest's MemTotal: $kb kB" || bad "the guest's MemTotal: '$kb' kB"
out=$(hx update --memory 512m up 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$out" = "hx: container up: memory 512 MiB is more than its running VM was made with (256 MiB; no memory hot-plug yet): stop it, update it, start it" ] \
    && ok "--memory beyond the domain's maximum: exit 1, one line" || bad "update --memory 512m: exit $rc: $out"
[ "$(domain_mem up)" -le 161 ] && ok "a refused update changed nothing" || bad "up has $(domain_mem up) MiB after a refused update"
hx update --memory 256m up >/dev/null && wait_domain_mem up 256 && ok "back to 256 MiB" || bad "up has $(domain_mem up) MiB, not 256"
[ "$(hx inspect -f '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}' up)" = "268435456 500000000 512" ] \
    && ok "hx inspect shows the limits" || bad "inspect: $(hx inspect -f '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}' up)"
hx stop -t 1 up >/dev/null && hx start up >/dev/null && [ "$(credit2 up)" = "128 50" ] && ok "stop, start: cap and weight set again" || bad "after a restart: credit2 $(credit2 up)"
hx update --cpus 0 up >/dev/null && [ "$(credit2 up)" = "128 0" ] && ok "--cpus 0 lifts the cap" || bad "--cpus 0: $(credit2 up)"
hx rm -f up >/dev/null || bad "hx rm -f up"

hx destroy xv && domain_gone xv 20 && ok "destroy xv" || bad "destroy xv: still listed"
for _ in $(seq 10); do [ "$(dms)" = 0 ] && break; sleep 1; done
[ "$(dms)" = 0 ] && ok "QEMU gone with the domain" || bad "$(dms) QEMU processes left"
snapshot /tmp/vnc-after
for f in /tmp/vnc-before /tmp/vnc-after; do grep -v -x -e /libxl -e /vm -e /local/domain/0/device-model "$f" > "$f.cmp"; done
if diff /tmp/vnc-before.cmp /tmp/vnc-after.cmp >/dev/null; then ok "no leaks: domains, loops, xenstore, containers"; else bad "state changed"; diff /tmp/vnc-before.cmp /tmp/vnc-after.cmp | head -20; fi
exit $fail
