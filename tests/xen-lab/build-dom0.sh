#!/bin/bash
# Builds the lab's dom0 base: a Debian bookworm minbase (mmdebstrap) with Xen's dom0 tools and the
# kernel modules dom0 needs, packed as one newc cpio, plus Debian's dom0 kernel next to it.
# /init, hx and the tests are not part of it (run appends them as a second cpio), so changing
# them never rebuilds this. Prints the output directory: vmlinuz, base.cpio, files.txt (its
# contents), kernel-version.
# Cached in $HX_LAB_CACHE/dom0/<key>, key = this script + kernel and xen-utils versions + mirror.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${HX_LAB_CACHE:-/var/cache/hx-lab}"
mirror="${HX_LAB_MIRROR:-http://deb.debian.org/debian}"
security="${HX_LAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
apt() { "$here/apt.sh" "$@"; }
log() { echo "xen-lab: $*" >&2; }

PACKAGES=(
    xen-utils-4.17 xenstore-utils kmod busybox-static e2fsprogs mount iproute2 bridge-utils procps
    util-linux cpio jq erofs-utils nftables curl ca-certificates libssl3 zlib1g
    # QEMU as libxl's per-domain 9pfs backend: read-write host directories (`hx run -v DIR:PATH`).
    qemu-system-xen
    # Load generator for tests/xen-lab/nginx-bench.sh.
    wrk
)
# Loaded by /init or by the tests; their dependencies come along (modprobe --show-depends).
MODULES=(
    xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-blkback xen-netback loop bridge tun
    veth nf_tables nft_nat nft_masq nft_chain_nat nft_ct nft_reject_inet nft_fib_inet nf_conntrack
    nf_nat 8021q
    # A domain on a network namespace's interface (docker's veth, --network ns:PATH): tc
    # mirroring (engine network/netns_link.rs).
    sch_ingress cls_u32 act_mirred
    # dockerd in dom0 (checks/docker.sh, its binaries from build-extras.sh): overlay2, and the
    # xtables matches and targets its iptables-nft rules use through nft_compat.
    overlay nft_compat xt_conntrack xt_addrtype xt_MASQUERADE xt_nat xt_tcpudp br_netfilter
    # CNI's portmap plugin (checks/cri.sh: a pod's hostPort): its comments, marks and
    # multiport matches.
    xt_comment xt_mark xt_multiport
    # The scratch disk tests/xen-lab/run attaches (virtio-blk, ext4 with metadata checksums):
    # hx's store and the images; ext4 also for loop-mounting hx volumes (compat-bench.sh).
    virtio_pci virtio_blk ext4 crc32c_generic
)

kpkg="$(apt apt-cache depends linux-image-amd64 | awk '$1=="Depends:" && $2 ~ /^linux-image-6\.1\.0-[0-9]+-amd64$/ {print $2; exit}')"
[ -n "$kpkg" ] || { log "cannot resolve linux-image-amd64 to a linux-image-6.1.0-*-amd64 package"; exit 1; }
kver_pkg="$(apt apt-cache policy "$kpkg" | awk '$1=="Candidate:"{print $2}')"
xen_utils="$(apt apt-cache policy xen-utils-4.17 | awk '$1=="Candidate:"{print $2}')"
key="$(cat "$0" <(echo "$kpkg $kver_pkg $xen_utils $mirror $security") | sha256sum | cut -c1-16)"
out="$cache/dom0/$key"
mkdir -p "$cache/dom0"
exec 9>"$cache/dom0/lock"
flock 9   # another lab run may be building the same thing
if [ -f "$out/base.cpio" ]; then echo "$out"; exit 0; fi

work="$cache/dom0/build-$key"
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
root="$work/root"

log "mmdebstrap: bookworm minbase for dom0 (~1 minute)"
excludes=()
for p in /usr/share/doc/'*' /usr/share/man/'*' /usr/share/info/'*' /usr/share/locale/'*' /usr/share/lintian/'*'; do
    excludes+=(--dpkgopt="path-exclude=$p")
done
excludes+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
nice mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" "${excludes[@]}" \
    bookworm "$root" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" >&2

log "dom0 kernel: $kpkg $kver_pkg"
kdeb="$cache/downloads/${kpkg}_${kver_pkg//:/%3a}_amd64.deb"
[ -f "$kdeb" ] || (mkdir -p "$cache/downloads" && cd "$cache/downloads" && apt download -q "$kpkg=$kver_pkg" >&2)
# The dom0 tree's own kmod resolves dependencies (the host need not have kmod).
inroot() { chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
kroot="$root/tmp/kernel"
mkdir -p "$kroot"
dpkg -x "$kdeb" "$kroot"
kver="${kpkg#linux-image-}"
kmods="$kroot/lib/modules/$kver"
inroot depmod -b /tmp/kernel "$kver"
mkdir -p "$root/lib/modules/$kver/kernel"
cp "$kmods"/modules.order "$kmods"/modules.builtin* "$root/lib/modules/$kver/"
for m in "${MODULES[@]}"; do
    deps="$(inroot modprobe -d /tmp/kernel -S "$kver" --show-depends "$m")" || { log "module $m not in $kpkg"; exit 1; }
    awk '$1=="insmod"{print $2}' <<<"$deps" | while read -r ko; do
        rel="${ko#/tmp/kernel/lib/modules/"$kver"/}"
        install -D -m 0644 "$kmods/$rel" "$root/lib/modules/$kver/$rel"
    done
done
inroot depmod "$kver"
cp "$kroot/boot/vmlinuz-$kver" "$work/vmlinuz"
rm -rf "$kroot"

# The kernel opens /dev/console before /init runs, so the node must be in the archive.
rm -rf "$root/dev"; mkdir -p "$root/dev"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

log "packing the dom0 base ($(du -sm "$root" | cut -f1) MB)"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort > "$work/files.txt" && cpio --quiet -o -H newc < "$work/files.txt") > "$work/base.cpio"
mkdir -p "$out.tmp"
mv "$work/base.cpio" "$work/vmlinuz" "$work/files.txt" "$out.tmp/"
echo "$kver" > "$out.tmp/kernel-version"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$out"
