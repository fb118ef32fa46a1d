#!/bin/bash
# Builds one image of the compatibility suite (docs/compatibility.md) as an OCI layout in
# OUT_LAYOUT_DIR, named hx-compat/NAME:test for `hx load`: Debian bookworm minbase + the
# Debian package, configured the way the official Docker Hub image behaves (entrypoint,
# VOLUMEs, EXPOSE, user, STOPSIGNAL). Entrypoints and apps come from tests/images/compat/.
# The mmdebstrap output is cached by its inputs in $HX_TEST_CACHE (default
# /var/cache/hx-tests): an uncached build takes 30-120 s and needs the Debian mirror.
#   NAME: redis | mariadb | memcached | python | haproxy | node | postgres
set -euo pipefail
name="${1:?usage: compat.sh NAME OUT_LAYOUT_DIR}"
out="${2:?usage: compat.sh NAME OUT_LAYOUT_DIR}"
cache="${HX_TEST_CACHE:-/var/cache/hx-tests}"
here="$(cd "$(dirname "$0")" && pwd)"
files="$here/compat"
suite=bookworm
mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# install FILE as /usr/local/bin/docker-entrypoint.sh (root mode: $1 is the rootfs on the host)
entrypoint() {
    echo "install -D -m 0755 $files/$1 \"\$1/usr/local/bin/docker-entrypoint.sh\""
}
args=(--variant=minbase --mode=root --format=tar
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*')
inputs=()
case "$name" in
redis)
    # Official: ENTRYPOINT docker-entrypoint.sh, CMD redis-server, VOLUME /data, WORKDIR /data,
    # EXPOSE 6379; the entrypoint chowns /data and drops to redis with gosu.
    args+=(--include=redis-server,gosu
        --customize-hook='mkdir -p "$1/data" && chroot "$1" chown redis:redis /data'
        --customize-hook="$(entrypoint redis-entrypoint.sh)")
    inputs+=("$files/redis-entrypoint.sh")
    layout=(--entrypoint docker-entrypoint.sh --workdir /data --volume /data --expose 6379/tcp
        --cmd redis-server)
    ;;
mariadb)
    # Official: what its Dockerfile does after installing mariadb-server: an empty, mysql-owned
    # /var/lib/mysql and /run/mysqld, bind-address/log/user commented out of the config, no
    # reverse lookups; VOLUME /var/lib/mysql, EXPOSE 3306, CMD mariadbd, no STOPSIGNAL (TERM).
    args+=(--include=mariadb-server,mariadb-client,gosu
        --customize-hook='rm -rf "$1/var/lib/mysql"; mkdir -p "$1/var/lib/mysql" "$1/run/mysqld"; chroot "$1" chown mysql:mysql /var/lib/mysql /run/mysqld; chmod 777 "$1/run/mysqld"'
        --customize-hook='grep -rlZE "^(bind-address|log|user\s)" "$1/etc/mysql" | xargs -r0 sed -Ei "s/^(bind-address|log|user\s)/#&/"'
        --customize-hook='printf "[mariadb]\nhost-cache-size=0\nskip-name-resolve\n" > "$1/etc/mysql/mariadb.conf.d/05-skipcache.cnf"'
        --customize-hook="$(entrypoint mariadb-entrypoint.sh)")
    inputs+=("$files/mariadb-entrypoint.sh")
    layout=(--entrypoint docker-entrypoint.sh --volume /var/lib/mysql --expose 3306/tcp
        --cmd mariadbd)
    ;;
memcached)
    # Official: USER memcache, ENTRYPOINT docker-entrypoint.sh, CMD memcached, EXPOSE 11211.
    args+=(--include=memcached
        --customize-hook="$(entrypoint memcached-entrypoint.sh)")
    inputs+=("$files/memcached-entrypoint.sh")
    layout=(--entrypoint docker-entrypoint.sh --user memcache --expose 11211/tcp
        --cmd memcached)
    ;;
python)
    # python:3.11-slim (CMD python3) plus an app the way people add one: /app/app.py, a WSGI
    # app on wsgiref, EXPOSE 8000, VOLUME /data for its notes.
    args+=(--include=python3
        --customize-hook="install -D -m 0644 $files/app.py \"\$1/app/app.py\"; mkdir -p \"\$1/data\"")
    inputs+=("$files/app.py")
    layout=(--workdir /app --volume /data --expose 8000/tcp --cmd python3 /app/app.py)
    ;;
haproxy)
    # Official: STOPSIGNAL SIGUSR1, USER haproxy, WORKDIR /var/lib/haproxy, ENTRYPOINT
    # docker-entrypoint.sh (haproxy -W -db), CMD haproxy -f /usr/local/etc/haproxy/haproxy.cfg
    # (no config in the image: users mount theirs), no EXPOSE.
    args+=(--include=haproxy
        --customize-hook='mkdir -p "$1/usr/local/etc/haproxy" "$1/var/lib/haproxy"'
        --customize-hook="$(entrypoint haproxy-entrypoint.sh)")
    inputs+=("$files/haproxy-entrypoint.sh")
    layout=(--entrypoint docker-entrypoint.sh --user haproxy --workdir /var/lib/haproxy
        --stop-signal SIGUSR1 --cmd haproxy -f /usr/local/etc/haproxy/haproxy.cfg)
    ;;
node)
    # Official: ENTRYPOINT docker-entrypoint.sh, CMD node; plus /app/server.js on port 3000.
    args+=(--include=nodejs
        --customize-hook="install -D -m 0644 $files/server.js \"\$1/app/server.js\""
        --customize-hook="$(entrypoint node-entrypoint.sh)")
    inputs+=("$files/server.js" "$files/node-entrypoint.sh")
    layout=(--entrypoint docker-entrypoint.sh --workdir /app --expose 3000/tcp
        --cmd server.js)
    ;;
postgres)
    # Official: ENTRYPOINT docker-entrypoint.sh, CMD postgres, STOPSIGNAL SIGINT (fast
    # shutdown), ENV PGDATA=/var/lib/postgresql/data, VOLUME of it, EXPOSE 5432; the server's
    # binaries on PATH; Debian's cluster tooling's own cluster not made.
    args+=(--include=postgresql-15,gosu
        --essential-hook='mkdir -p "$1/etc/postgresql-common" && printf "create_main_cluster = false\n" > "$1/etc/postgresql-common/createcluster.conf"'
        --customize-hook='mkdir -p "$1/var/lib/postgresql/data" "$1/run/postgresql" && chroot "$1" chown -R postgres:postgres /var/lib/postgresql /run/postgresql'
        --customize-hook="$(entrypoint postgres-entrypoint.sh)")
    inputs+=("$files/postgres-entrypoint.sh")
    path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin
    layout=(--entrypoint docker-entrypoint.sh --env PGDATA=/var/lib/postgresql/data
        --volume /var/lib/postgresql/data --expose 5432/tcp --stop-signal SIGINT --cmd postgres)
    ;;
*)
    echo "compat.sh: unknown image $name" >&2
    exit 2
    ;;
esac
args+=(--customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists"; mkdir -p "$1/var/cache/apt" "$1/var/lib/apt/lists"')
# Cached by what goes into the rootfs: suite, mirror, mmdebstrap arguments (without the
# checkout's path), the copied files' contents.
key="$(printf '%s\n' "$suite" "$mirror" "${args[@]//"$files"/FILES}" | cat - "${inputs[@]}" | sha256sum | cut -c1-16)"
tarball="$cache/compat-$name-$key.tar"
if [ ! -f "$tarball" ]; then
    command -v mmdebstrap >/dev/null || { echo "compat.sh: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 2; }
    mkdir -p "$cache"
    echo "compat.sh: building the $name rootfs with mmdebstrap (cached as $tarball)" >&2
    mmdebstrap --quiet "${args[@]}" "$suite" "$tarball.tmp.$$" "$mirror" >&2
    mv "$tarball.tmp.$$" "$tarball"
fi
python3 "$here/oci-layout.py" "$tarball" "$out" --ref-name "hx-compat/$name:test" \
    --env "$path" "${layout[@]}"
