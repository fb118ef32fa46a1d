#!/bin/bash
# The main job on a fresh Debian 12 machine: set up hx, make a busybox image from Debian's
# busybox-static (there may be no registry at hand), and run it in a micro-VM on the default
# backend (Xen when this is a dom0, QEMU otherwise).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/setup.sh"
hx="${HX_PREFIX:-/usr/local}/bin/hx"

if ! "$hx" image inspect busybox:latest >/dev/null 2>&1; then
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    mkdir -p "$dir/bin" "$dir/etc" "$dir/root" "$dir/tmp"
    cp /bin/busybox "$dir/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
    "$hx" import "$dir" busybox:latest --change 'CMD ["sh"]' --change 'ENV PATH=/bin'
fi
"$hx" run --rm busybox echo "hello from an hx micro-VM"
