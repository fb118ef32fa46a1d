#!/bin/bash
# docker-entrypoint.sh of the compat suite's mariadb image: the official image's behaviour, in
# short. With mariadbd (or options alone) as the command:
# - as root: take ownership of the data directory (a volume) and re-run as mysql (gosu);
# - when /var/lib/mysql holds no database yet: refuse to start without one of
#   MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD
#   (exit 1, like the official image); mariadb-install-db; a temporary server on the socket
#   only; root@localhost and root@% with the password; MARIADB_DATABASE, MARIADB_USER and
#   MARIADB_PASSWORD (the MYSQL_* names too); then that server is shut down;
# - exec mariadbd, which becomes the container's workload (STOPSIGNAL: TERM, as docker's).
set -eo pipefail
log() { echo "$(date -u '+%F %T') 0 [Note] [Entrypoint]: $*"; }
die() { echo "$(date -u '+%F %T') 0 [ERROR] [Entrypoint]: $*" >&2; exit 1; }

if [ "${1:0:1}" = - ]; then
    set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then
    exec "$@"
fi
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    find "$datadir" \! -user mysql -exec chown mysql:mysql '{}' +
    log "switching to dedicated user 'mysql'"
    exec gosu mysql "${BASH_SOURCE[0]}" "$@"
fi

for v in ROOT_PASSWORD ALLOW_EMPTY_ROOT_PASSWORD RANDOM_ROOT_PASSWORD DATABASE USER PASSWORD; do
    m="MARIADB_$v" o="MYSQL_$v"
    [ -z "${!m:-}" ] && [ -n "${!o:-}" ] && export "$m=${!o}"
done
# SQL string literal contents: backslashes and quotes escaped.
esc() { sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" <<<"$1"; }

if [ ! -d "$datadir/mysql" ]; then
    if [ -z "${MARIADB_ROOT_PASSWORD:-}" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ] \
        && [ -z "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
        die "Database is uninitialized and password option is not specified
	You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD"
    fi
    if [ -n "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
        MARIADB_ROOT_PASSWORD="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
        log "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
    fi
    log "Initializing database files"
    mariadb-install-db --datadir="$datadir" --rpm --auth-root-authentication-method=normal \
        --skip-test-db --skip-log-bin --default-time-zone=SYSTEM --skip-name-resolve \
        --loose-innodb_buffer_pool_load_at_startup=0 --loose-innodb_buffer_pool_dump_at_shutdown=0
    log "Database files initialized"
    log "Starting temporary server"
    "$@" --skip-networking --skip-log-bin --default-time-zone=SYSTEM --socket="$socket" \
        --loose-innodb_buffer_pool_load_at_startup=0 &
    pid=$!
    for _ in $(seq 300); do
        mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || die "the temporary server exited"
        sleep 1
    done
    log "Temporary server started."
    pw="$(esc "${MARIADB_ROOT_PASSWORD:-}")"
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DROP USER IF EXISTS ''@'localhost', ''@'$(hostname)';"
        echo "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$pw');"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY '$pw';"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "${MARIADB_DATABASE:-}" ]; then
            log "Creating database ${MARIADB_DATABASE}" >&2
            echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE//\`/\`\`}\`;"
        fi
        if [ -n "${MARIADB_USER:-}" ] && [ -n "${MARIADB_PASSWORD:-}" ]; then
            log "Creating user ${MARIADB_USER}" >&2
            echo "CREATE USER '$(esc "$MARIADB_USER")'@'%' IDENTIFIED BY '$(esc "$MARIADB_PASSWORD")';"
            [ -n "${MARIADB_DATABASE:-}" ] && echo "GRANT ALL ON \`${MARIADB_DATABASE//\`/\`\`}\`.* TO '$(esc "$MARIADB_USER")'@'%';"
        fi
    } | mariadb --socket="$socket" -uroot --protocol=socket
    log "Stopping temporary server"
    kill "$pid"
    wait "$pid"
    log "Temporary server stopped"
    log "MariaDB init process done. Ready for start up."
fi
exec "$@"
