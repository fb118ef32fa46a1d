#!/bin/bash
# Builds the lab's extras: Debian packages that only some checks need (docker.io, containerd,
# runc, iptables, the CNI plugins for checks/docker.sh), unpacked with their dependencies that
# the dom0 base lacks into one tree. tests/xen-lab/run --extras puts the tree on the scratch disk
# (/lab/disk/extras), so it costs dom0 no RAM and the base (every lab boot) stays small; lib.sh's
# use_extras puts it on PATH. Usage: build-extras.sh DOM0_DIR (build-dom0.sh's output). Prints
# the tree's directory. Cached in $HX_LAB_CACHE/extras/<key>, key = this script + the base +
# the packages' versions.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${HX_LAB_CACHE:-/var/cache/hx-lab}"
dom0="$1"
apt() { "$here/apt.sh" "$@"; }
log() { echo "xen-lab: $*" >&2; }

PACKAGES=(docker.io containerd runc tini iptables containernetworking-plugins)

# apt's own solver against the base's dpkg status (taken out of base.cpio): exactly the
# packages a minbase install would add, alternatives resolved as apt resolves them.
status="$(mktemp)"
trap 'rm -f "$status"' EXIT
(cd / && cpio --quiet -i --to-stdout var/lib/dpkg/status < "$dom0/base.cpio") > "$status"
[ -s "$status" ] || { log "no dpkg status in $dom0/base.cpio"; exit 1; }
versions="$(apt -s -o "Dir::State::status=$status" install --no-install-recommends "${PACKAGES[@]}" |
    awk '$1 == "Inst" {gsub(/[()]/, "", $3); print $2, $3}')"
[ -n "$versions" ] || { log "apt found nothing to add for ${PACKAGES[*]}"; exit 1; }
key="$(cat "$0" "$status" <(echo "$versions") | sha256sum | cut -c1-16)"
out="$cache/extras/$key"
mkdir -p "$cache/extras" "$cache/downloads"
exec 9>"$cache/extras/lock"
flock 9
if [ -d "$out" ]; then echo "$out"; exit 0; fi

log "extras: $(echo "$versions" | cut -d" " -f1 | tr "\n" " ")"
work="$cache/extras/build-$key"
rm -rf "$work"; mkdir -p "$work/root"
trap 'rm -rf "$work" "$status"' EXIT
while read -r p v; do
    deb="$(ls "$cache/downloads/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -1)" || true
    if [ -z "$deb" ]; then
        (cd "$cache/downloads" && apt download -q "$p=$v" >&2)
        deb="$(ls "$cache/downloads/${p}_${v//:/%3a}_"*.deb | head -1)"
    fi
    dpkg -x "$deb" "$work/root"
done <<<"$versions"
root="$work/root"
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"
# dpkg -x runs no maintainer scripts: the alternatives iptables' postinst would set up.
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    [ -e "$root/usr/sbin/${t/tables/tables-nft}" ] || { log "no ${t/tables/tables-nft} in iptables"; exit 1; }
    ln -sfn "${t/tables/tables-nft}" "$root/usr/sbin/$t"
done
for b in dockerd docker containerd containerd-shim-runc-v2 runc docker-proxy iptables; do
    [ -e "$root/usr/bin/$b" ] || [ -e "$root/usr/sbin/$b" ] || { log "extras: $b missing from the unpacked packages"; exit 1; }
done
log "extras: $(du -sm "$root" | cut -f1) MB"
mv "$root" "$out"
echo "$out"
