#!/bin/sh
# docker-entrypoint.sh of the compat suite's memcached image (the official image's behaviour):
# options alone (`hx run IMAGE -m 64`) are memcached's.
set -e
case "$1" in
    -*) set -- memcached "$@" ;;
esac
exec "$@"
