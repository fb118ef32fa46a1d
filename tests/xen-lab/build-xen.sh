#!/bin/bash
# Builds Xen 4.17 with shadow paging (PVH guests under QEMU TCG need hap=0: NOTES.md) from
# Debian's `xen` source package and Debian's own hypervisor config. Prints the path of the
# multiboot ELF. Cached in $HX_LAB_CACHE/xen/<key>, key = source + config + this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${HX_LAB_CACHE:-/var/cache/hx-lab}"
apt() { "$here/apt.sh" "$@"; }
log() { echo "xen-lab: $*" >&2; }

dl="$cache/downloads"
mkdir -p "$dl"
src_ver="$(apt apt-cache showsrc xen | awk '$1=="Version:"{print $2}' | sort -V | tail -1)"
[ -n "$src_ver" ] || { log "no source package for xen in the lab's deb-src list"; exit 1; }
bin_ver="$(apt apt-cache policy xen-hypervisor-4.17-amd64 | awk '$1=="Candidate:"{print $2}')"
upstream="${src_ver%-*}"
orig="$dl/xen_${upstream}.orig.tar.xz"
deb="$dl/xen-hypervisor-4.17-amd64_${bin_ver//:/%3a}_amd64.deb"
if [ ! -f "$orig" ]; then
    log "downloading xen $src_ver source"
    (cd "$dl" && apt source --download-only -q "xen=$src_ver" >&2)
fi
if [ ! -f "$deb" ]; then
    log "downloading xen-hypervisor-4.17-amd64 $bin_ver (for its config)"
    (cd "$dl" && apt download -q "xen-hypervisor-4.17-amd64=$bin_ver" >&2)
fi

key="$(cat "$orig" "$deb" "$0" | sha256sum | cut -c1-16)"
out="$cache/xen/$key"
mkdir -p "$cache/xen"
exec 9>"$cache/xen/lock"
flock 9   # another lab run may be building the same thing
if [ ! -f "$out/xen" ]; then
    work="$cache/xen/build-$key"
    rm -rf "$work"; mkdir -p "$work/deb"
    dpkg -x "$deb" "$work/deb"
    tar -C "$work" -xf "$orig"
    tree="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'xen*' | head -1)"
    cp "$work"/deb/boot/xen-4.17-amd64.config "$tree/xen/.config"
    sed -i '/CONFIG_SHADOW_PAGING/d' "$tree/xen/.config"
    echo CONFIG_SHADOW_PAGING=y >> "$tree/xen/.config"
    log "building Xen $upstream with shadow paging (~2 minutes)"
    make -s -C "$tree/xen" olddefconfig >&2
    grep -qx CONFIG_SHADOW_PAGING=y "$tree/xen/.config" || { log "CONFIG_SHADOW_PAGING lost by olddefconfig"; exit 1; }
    nice make -s -C "$tree/xen" -j"$(nproc)" >&2
    mkdir -p "$out.tmp"
    cp "$tree/xen/xen" "$tree/xen/.config" "$out.tmp/"
    echo "$src_ver" > "$out.tmp/version"
    rm -rf "$out"; mv "$out.tmp" "$out"
    rm -rf "$work"
fi
echo "$out/xen"
