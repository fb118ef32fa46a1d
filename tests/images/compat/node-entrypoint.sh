#!/bin/sh
# docker-entrypoint.sh of the compat suite's node image (the official image's behaviour): an
# option or a file that is not a command on PATH runs under node (`hx run IMAGE app.js`).
set -e
if [ "${1#-}" != "$1" ] || ! command -v -- "$1" >/dev/null 2>&1; then
    set -- node "$@"
fi
exec "$@"
