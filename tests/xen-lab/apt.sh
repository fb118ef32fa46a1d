#!/bin/bash
# apt-get with a private sources list (bookworm + updates + backports + security, and deb-src for
# bookworm), so the lab can take QEMU 10 from backports and Xen's source package without touching
# the machine's own sources. Usage: apt.sh [apt-cache] ARGS...  (lists live in $HX_LAB_APT;
# apt-get unless the first argument is apt-cache)
set -euo pipefail
state="${HX_LAB_APT:-${HX_LAB_CACHE:-/var/cache/hx-lab}/apt}"
mirror="${HX_LAB_MIRROR:-http://deb.debian.org/debian}"
security="${HX_LAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
mkdir -p "$state/lists/partial"
sources="deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $mirror bookworm-backports main
deb $security bookworm-security main
deb-src $mirror bookworm main
"
# Rewritten every time so a changed mirror takes effect; the lists are refreshed when the
# sources change or are older than 12 hours.
if [ "$(cat "$state/sources.list" 2>/dev/null)" != "$(printf '%s' "$sources")" ]; then
    printf '%s' "$sources" > "$state/sources.list"
    rm -f "$state/updated"
fi
opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=-"
      -o "Dir::State::Lists=$state/lists" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
if [ ! -f "$state/updated" ] || [ -n "$(find "$state/updated" -mmin +720)" ]; then
    apt-get "${opts[@]}" update -q >&2
    touch "$state/updated"
fi
tool=apt-get
if [ "${1:-}" = apt-cache ]; then tool=apt-cache; shift; fi
exec "$tool" "${opts[@]}" "$@"
