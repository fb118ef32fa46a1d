#!/bin/bash
# VNC on an ordinary xl.cfg domain (docs/cli.md, "hx create FILE.cfg"): a PV framebuffer
# (`vfb = ['vnc=1, ...']`) served by QEMU in dom0, `hx create -V` starting a viewer on it as
# `xl create -V` does, and `hx vncviewer` (xl vncviewer). libxl runs $VNCVIEWER, else vncviewer
# (none in the lab): here a script that records its arguments and standard input (the password,
# with -autopass) and reads the server's RFB greeting. Nothing left: domain, QEMU, xenstore nodes.
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

# A domain without a VNC server, and a bad vfb: one line, exit 1.
out=$(timeout 60 hx vncviewer 0 2>&1); rc=$?
[ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"no VNC server"* ]] \
    && ok "vncviewer of Domain-0: exit 1 ($out)" || bad "vncviewer 0: exit $rc: $out"
out=$(hx create -q -n "$w/xv.cfg" "vfb=['vnc=1,sdl=1']" 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == *"unsupported parameter \"sdl\""* ]] && ok "a vfb with sdl=1 refused, exit 1" \
    || bad "sdl vfb: exit $rc: $out"

hx destroy xv && domain_gone xv 20 && ok "destroy xv" || bad "destroy xv: still listed"
for _ in $(seq 10); do [ "$(dms)" = 0 ] && break; sleep 1; done
[ "$(dms)" = 0 ] && ok "QEMU gone with the domain" || bad "$(dms) QEMU processes left"
snapshot /tmp/vnc-after
for f in /tmp/vnc-before /tmp/vnc-after; do grep -v -x -e /libxl -e /vm -e /local/domain/0/device-model "$f" > "$f.cmp"; done
if diff /tmp/vnc-before.cmp /tmp/vnc-after.cmp >/dev/null; then ok "no leaks: domains, loops, xenstore, containers"; else bad "state changed"; diff /tmp/vnc-before.cmp /tmp/vnc-after.cmp | head -20; fi
exit $fail
