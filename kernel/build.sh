#!/bin/bash
# Builds the hyper kernel from Debian's linux-source-6.1 with tinyconfig + hyper.config.
# Output: $HX_KERNEL_OUT (default: kernel/out) holding bzImage, vmlinux and config.
# Cached by hash(hyper.config, build.sh, patches/, linux-source version): nothing is rebuilt when
# those are unchanged. patches/*.patch (-p1, in name order) are applied to the source first.
set -euo pipefail
# Only the bzImage path goes to stdout (callers capture it); everything else goes to stderr.
exec 3>&1 1>&2
here="$(cd "$(dirname "$0")" && pwd)"
out="${HX_KERNEL_OUT:-$here/out}"
cache="${HX_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hx/kernel}"
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -f "$src_tar" ] || { echo "kernel/build.sh: $src_tar missing: apt-get install linux-source-6.1" >&2; exit 2; }
src_ver="$(dpkg-query -W -f='${Version}' linux-source-6.1)"
shopt -s nullglob
patches=("$here"/patches/*.patch)
shopt -u nullglob
key="$(cat "$here/hyper.config" "$here/build.sh" "${patches[@]}" <(echo "$src_ver") | sha256sum | cut -c1-16)"
dest="$cache/$key"
if [ ! -f "$dest/bzImage" ]; then
    work="$cache/build-$key"
    rm -rf "$work"; mkdir -p "$work"
    echo "kernel: extracting linux-source $src_ver" >&2
    tar -C "$work" -xf "$src_tar"
    ksrc="$work/linux-source-6.1"
    for p in "${patches[@]}"; do
        echo "kernel: applying $(basename "$p")" >&2
        patch -d "$ksrc" -p1 --forward --batch --quiet < "$p"
    done
    make -C "$ksrc" -s ARCH=x86_64 tinyconfig >&2
    "$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$here/hyper.config" >/dev/null
    make -C "$ksrc" -s ARCH=x86_64 olddefconfig
    # Every =y line of the fragment must survive olddefconfig, or the kernel is silently wrong.
    missing=0
    while IFS= read -r line; do
        case "$line" in CONFIG_*=y) grep -qx "$line" "$ksrc/.config" || { echo "kernel: $line dropped by kconfig" >&2; missing=1; };; esac
    done < "$here/hyper.config"
    [ "$missing" = 0 ] || exit 3
    echo "kernel: building (this takes ~10 minutes on 2 cores)" >&2
    make -C "$ksrc" -s ARCH=x86_64 -j"$(nproc)" bzImage
    mkdir -p "$dest.tmp"
    cp "$ksrc/arch/x86/boot/bzImage" "$ksrc/vmlinux" "$ksrc/.config" "$dest.tmp/"
    mv "$dest.tmp/.config" "$dest.tmp/config"
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
    rm -rf "$work"
fi
mkdir -p "$out"
for f in bzImage vmlinux config; do ln -sfn "$dest/$f" "$out/$f"; done
echo "$out/bzImage" >&3
