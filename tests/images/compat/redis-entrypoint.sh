#!/bin/sh
# docker-entrypoint.sh of the compat suite's redis image: behaves like the official image's.
# - `hx run IMAGE --appendonly yes` (options, or a *.conf first) runs redis-server with them;
# - redis-server started as root takes ownership of its working directory (/data, a volume)
#   and drops to the redis user (gosu), like docker's;
# - the official image builds redis with protected mode off by default; Debian's binary keeps
#   it on, which refuses every client from outside the container when no password is set, so
#   the entrypoint adds `--protected-mode no` unless the command line sets protected-mode.
set -e
case "$1" in
    -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . ! -user redis -exec chown redis '{}' +
    exec gosu redis "$0" "$@"
fi
if [ "$1" = redis-server ]; then
    case " $* " in
        *" --protected-mode "*) ;;
        *)
            shift
            if [ "${1%.conf}" != "$1" ]; then
                conf="$1"
                shift
                set -- redis-server "$conf" --protected-mode no "$@"
            else
                set -- redis-server --protected-mode no "$@"
            fi
            ;;
    esac
    [ "$(umask)" = 0022 ] && umask 0077
fi
exec "$@"
