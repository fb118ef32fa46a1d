#!/bin/sh
# docker-entrypoint.sh of the compat suite's haproxy image (the official image's behaviour):
# options alone are haproxy's, and haproxy runs in master-worker mode (-W) in the foreground
# with logs to stderr (-db), so the STOPSIGNAL SIGUSR1 stops it gracefully.
set -e
case "$1" in
    -*) set -- haproxy "$@" ;;
esac
if [ "$1" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi
exec "$@"
