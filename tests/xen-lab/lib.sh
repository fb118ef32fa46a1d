# Helpers for the scripts that run inside the lab's dom0 (suite.sh, bench.sh). Sourced.
# Result lines go to the console, where tests/xen-lab/run collects them.
HX_LIB=/usr/local/lib/hx
CONSOLE_DIR=/var/log/xen/console

pass() { echo "HXLAB-RESULT PASS $1${2:+ ($2)}"; }
fail() { echo "HXLAB-RESULT FAIL $1${2:+: $2}"; }
# Evidence for a failure, indented so it reads as part of the result above it.
show() { sed 's/^/    | /' | tail -n "${1:-30}"; }
now() { date +%s.%N; }
# The lab's second CPU, offline unless the lab was booted with both (dom0-init, LAB_CPUS):
# online for a check that needs it (CPU pools, pinning to CPU 1), offline again after it.
online_cpus() { xl info | awk '/^nr_cpus/ {print $3}'; }
second_cpu_on() { [ "$(online_cpus)" -ge 2 ] || xen-hptool cpu-online 1 >/dev/null; }
second_cpu_off() {
    (. /lab/config; [ "${LAB_CPUS:-1}" = 2 ]) && return 0
    [ "$(online_cpus)" -lt 2 ] || xen-hptool cpu-offline 1 >/dev/null
}
elapsed() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN{printf "%.2f", b-a}'; }

# guest_initrd OUT: a busybox initramfs whose /init prints what the guest sees of /dev/xvda
# (size, Xen device type, first bytes), writes a marker at 4 KiB into it, and powers off.
# With HXGUEST_QUICK=1 on the kernel command line it powers off at once (the benchmark's guest).
guest_initrd() {
    local out="$1" d
    d="$(mktemp -d)"
    mkdir -p "$d/bin" "$d/dev" "$d/proc" "$d/sys"
    cp /bin/busybox "$d/bin/busybox"
    cat > "$d/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
grep -q HXGUEST_QUICK=1 /proc/cmdline 2>/dev/null || {
    /bin/busybox --install -s /bin
    export PATH=/bin
    mount -t sysfs sys /sys
    echo "HXGUEST-START $(cut -d' ' -f1 /proc/uptime)"
    if [ -b /dev/xvda ]; then
        echo "HXGUEST-XVDA size=$(cat /sys/block/xvda/size) devtype=$(cat /sys/block/xvda/device/devtype) head=$(head -c 16 /dev/xvda)"
        printf 'written-by-guest' | dd of=/dev/xvda bs=4096 seek=1 conv=notrunc 2>/dev/null && sync
    else
        echo "HXGUEST-XVDA missing: $(cat /proc/partitions | tr '\n' ' ')"
    fi
    echo HXGUEST-DONE
}
/bin/busybox poweroff -f
EOF
    chmod +x "$d/init"
    (cd "$d" && find . | cpio --quiet -o -H newc -R 0:0) | gzip -1 > "$out"
    rm -rf "$d"
}

# busybox_initramfs OUT: a gzipped initramfs of dom0's busybox with the /init read from stdin
# (an ordinary domain for the xl comparisons: checks/xl-admin.sh, checks/xl-save.sh), and a
# /sbin/poweroff that powers off at once, which the guest kernel runs on a shutdown request.
busybox_initramfs() {
    local d
    d="$(mktemp -d)"
    mkdir -p "$d/bin" "$d/sbin" "$d/dev" "$d/proc" "$d/sys" "$d/run"
    cp /bin/busybox "$d/bin/busybox"
    cat > "$d/init"
    printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' > "$d/sbin/poweroff"
    chmod +x "$d/init" "$d/sbin/poweroff"
    (cd "$d" && find . | cpio --quiet -o -H newc -R 0:0) | gzip -1 > "$1"
    rm -rf "$d"
}

# domain_gone NAME TIMEOUT: waits until xl no longer lists NAME.
domain_gone() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        xl domid "$1" >/dev/null 2>&1 || return 0
        sleep 0.2
    done
    return 1
}

# snapshot FILE: what must not change across hx runs: domains, loop devices, xenstore paths,
# hx's containers.
snapshot() {
    {
        echo "## domains"; xl list | awk 'NR>1{print $1}' | sort
        echo "## loop devices"; losetup -a | sort
        echo "## xenstore"; xenstore-ls -f 2>/dev/null | sed 's/ = .*//' | sort
        echo "## hx containers"; hx ps -a -q 2>&1 | sort
    } > "$1"
}

# image_rootfs NAME DIR: unpacks the layers of the image loaded as NAME (its OCI layout, listed in
# /lab/images.list) into DIR, for dom0 to run the image's own binaries with chroot (the
# benchmarks' native side, the compat check's clients).
image_rootfs() {
    local layout manifest l
    layout="$(awk -v n="$1" '$1 == n || $1 == n ":latest" {print $2; exit}' /lab/images.list)"
    [ -n "$layout" ] || { echo "no image $1 in /lab/images.list (--image $1=LAYOUT)"; return 1; }
    mkdir -p "$2"
    manifest="$(jq -r '.manifests[0].digest' "$layout/index.json")" || return 1
    for l in $(jq -r '.layers[].digest' "$layout/blobs/sha256/${manifest#sha256:}"); do
        tar -C "$2" -xf "$layout/blobs/sha256/${l#sha256:}" || return 1
    done
}

# use_extras: puts the packages tests/xen-lab/run --extras unpacked on the scratch disk
# (build-extras.sh: docker.io, containerd, runc, iptables, CNI plugins) on PATH, their libraries
# in the loader's cache, and mounts what dockerd needs that dom0's /init does not (cgroup2).
use_extras() {
    local x=/lab/disk/extras
    [ -x "$x/usr/sbin/dockerd" ] || { echo "no extras on the scratch disk: run the lab with --extras"; return 1; }
    # Some packages still ship /lib and /sbin paths (dpkg -x does not merge them into /usr).
    export PATH="$x/usr/sbin:$x/usr/bin:$x/sbin:$x/bin:$PATH"
    # The loader's own path, not LD_LIBRARY_PATH: hooks run with the OCI spec's environment
    # (docker's libnetwork-setkey is dockerd's binary and needs libdevmapper).
    printf '%s\n' "$x/usr/lib/x86_64-linux-gnu" "$x/lib/x86_64-linux-gnu" > /etc/ld.so.conf.d/zz-hx-lab-extras.conf
    ldconfig
    export XTABLES_LIBDIR="$x/usr/lib/x86_64-linux-gnu/xtables"
    mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
}

# domain_mem DOMAIN: its memory in MiB as `xl list` shows it (name or id; empty when gone).
domain_mem() { xl list "$1" 2>/dev/null | awk 'NR==2 {print $3}'; }
# wait_domain_mem DOMAIN MIB: until `xl list` shows it within 2 MiB under MIB (a balloon gives
# pages back in batches: slow on a busy TCG host; 240 s at most).
wait_domain_mem() {
    local m
    for _ in $(seq 240); do
        m=$(domain_mem "$1"); [ -n "$m" ] && [ "$m" -le "$2" ] && [ "$m" -ge $(( $2 - 2 )) ] && return 0
        sleep 1
    done
    return 1
}
