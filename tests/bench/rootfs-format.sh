#!/bin/bash
# erofs vs ext4 for image rootfs: build time, size, mount time, on two trees (the official busybox
# image, and ~100 MB of /usr). Prints a markdown table (docs/images.md keeps the result).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"; trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/busybox" "$work/usr" "$work/mnt"
layout="$repo/../shared/images/busybox-1.38.0-glibc"
m=$(jq -r '.manifests[0].digest' "$layout/index.json" | cut -d: -f2)
l=$(jq -r '.layers[0].digest' "$layout/blobs/sha256/$m" | cut -d: -f2)
tar -xzf "$layout/blobs/sha256/$l" -C "$work/busybox"
# ~100 MB of real files
du -sm /usr/lib/x86_64-linux-gnu >/dev/null
cp -a /usr/lib/x86_64-linux-gnu "$work/usr/lib" 2>/dev/null || true
while [ "$(du -sm "$work/usr" | cut -f1)" -gt 110 ]; do
    big=$(find "$work/usr" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-); rm -f "$big"
done
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
echo "| tree | tree size | format | build ms | image size | loop mount ms |"
echo "|---|---|---|---|---|---|"
for tree in busybox usr; do
    size=$(du -sm --apparent-size "$work/$tree" | cut -f1)
    t=$(ms mkfs.erofs --quiet "$work/$tree.erofs" "$work/$tree")
    mt=$(ms mount -o loop,ro -t erofs "$work/$tree.erofs" "$work/mnt"); umount "$work/mnt"
    echo "| $tree | ${size} MB | erofs | $t | $(( $(stat -c %s "$work/$tree.erofs") / 1024 )) KiB | $mt |"
    bytes=$(( $(du -sb "$work/$tree" | cut -f1) * 12 / 10 + 16*1024*1024 ))
    truncate -s "$bytes" "$work/$tree.ext4"
    t=$(ms mkfs.ext4 -q -F -O ^has_journal -m 0 -d "$work/$tree" "$work/$tree.ext4")
    used=$(dumpe2fs -h "$work/$tree.ext4" 2>/dev/null | awk -F: '/^Block count/{bc=$2} /^Free blocks/{fb=$2} /^Block size/{bs=$2} END{print int((bc-fb)*bs/1024)}')
    mt=$(ms mount -o loop,ro -t ext4 "$work/$tree.ext4" "$work/mnt"); umount "$work/mnt"
    echo "| $tree | ${size} MB | ext4 (no journal) | $t | $used KiB used of $(( bytes / 1024 )) KiB | $mt |"
done
