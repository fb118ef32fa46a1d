#!/bin/bash
# Builds an nginx image the way docker's official one behaves (nginx -g 'daemon off;', port 80,
# access/error logs on stdout/stderr) from Debian bookworm minbase + nginx-light, as an OCI
# layout in $1. The mmdebstrap output is cached by its inputs in $HX_TEST_CACHE
# (default /var/cache/hx-tests): it takes ~40 s and needs the Debian mirror.
set -euo pipefail
out="${1:?usage: nginx.sh OUT_LAYOUT_DIR}"
cache="${HX_TEST_CACHE:-/var/cache/hx-tests}"
here="$(cd "$(dirname "$0")" && pwd)"
suite=bookworm
mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
args=(--variant=minbase --include=nginx-light --mode=root --format=tar
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --customize-hook='ln -sf /dev/stdout "$1/var/log/nginx/access.log"'
    --customize-hook='ln -sf /dev/stderr "$1/var/log/nginx/error.log"'
    --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists"; mkdir -p "$1/var/cache/apt" "$1/var/lib/apt/lists"')
key="$(printf '%s\n' "$suite" "$mirror" "${args[@]}" | cat - "$0" | sha256sum | cut -c1-16)"
tarball="$cache/nginx-$key.tar"
if [ ! -f "$tarball" ]; then
    command -v mmdebstrap >/dev/null || { echo "nginx.sh: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 2; }
    mkdir -p "$cache"
    echo "nginx.sh: building the rootfs with mmdebstrap (cached as $tarball)" >&2
    mmdebstrap --quiet "${args[@]}" "$suite" "$tarball.tmp" "$mirror" >&2
    mv "$tarball.tmp" "$tarball"
fi
python3 "$here/oci-layout.py" "$tarball" "$out" \
    --cmd nginx -g 'daemon off;' --expose 80/tcp --stop-signal SIGQUIT \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
