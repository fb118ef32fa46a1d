#!/bin/bash
# Redis and MariaDB on Xen versus the same servers run in dom0, in one lab boot (a benchmark, not
# a check; tests/bench/compat-lab.sh builds the images and runs it):
#   tests/xen-lab/run --no-suite --script tests/xen-lab/compat-bench.sh \
#       --image redis=LAYOUT --image mariadb=LAYOUT
# (LAYOUTs from tests/images/compat.sh). The clients are the images' own redis-benchmark and
# mariadb-slap (mysqlslap), chroot'ed in dom0 in a client network namespace over a veth, so the
# requests take the path another machine's would: veth → nftables DNAT → hx0 → vif → netfront →
# guest. Servers: `hx run -d -p 6379:6379 redis --save ''` and `hx run -d -m 512m -p 3306:3306
# -v benchdb:/var/lib/mysql mariadb` per guest type (TYPES, 1 vCPU), and the same binaries
# chroot'ed in dom0 (redis-server on 6380; the image's entrypoint and mariadbd on 3307, on the
# same data directory: the hx volume, loop-mounted). Same commands as tests/bench/compat.sh (QEMU).
# Env: REQUESTS (20000), QUERIES (2000), ROUNDS (1), TYPES ("pvh pv"). Prints markdown tables.
set -u
. /lab/lib.sh
n="${REQUESTS:-20000}" queries="${QUERIES:-2000}" rounds="${ROUNDS:-1}" types="${TYPES:-pvh pv}"
H=192.168.77.1
work=/lab/disk/work/compat-bench
r="$work/redis" m="$work/mariadb"
C() { ip netns exec client "$@"; }
die() { echo "compat-bench: $*"; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}'; }

ip netns add client
ip link add veth-h type veth peer name veth-c
ip link set veth-c netns client
ip addr add "$H/24" dev veth-h; ip link set veth-h up
ip -n client addr add 192.168.77.2/24 dev veth-c; ip -n client link set veth-c up; ip -n client link set lo up

t0="$(date +%s.%N)"
image_rootfs redis "$r" || die "cannot unpack the redis image"
image_rootfs mariadb "$m" || die "cannot unpack the mariadb image"
for d in "$r" "$m"; do mount --bind /dev "$d/dev"; mount -t proc proc "$d/proc"; done
echo "images unpacked for the native side and the clients in $(since "$t0") s"

wait_for() { # SECONDS COMMAND...
    local limit="$1"; shift
    for _ in $(seq 1 "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    return 1
}
ping_redis() { C chroot "$r" redis-cli -h "$H" -p "$1" ping | grep -q PONG; }
ping_db() { C chroot "$m" mariadb -h "$H" -P "$1" -uroot -pbench -e 'select 1'; }
# redis-benchmark -q prints "SET: 1234.56 requests per second, p50=1.234 msec".
rb() { C chroot "$r" redis-benchmark -h "$H" -p "$1" -q -n "$n" -t set,get | tr '\r' '\n' | grep -E '^(SET|GET): .*requests per second'; }
slap() { # PORT → average seconds to run all queries
    C chroot "$m" mariadb-slap -h "$H" -P "$1" -uroot -pbench --concurrency=4 --iterations=1 \
        --number-of-queries="$queries" --auto-generate-sql --auto-generate-sql-load-type=mixed \
        --auto-generate-sql-add-autoincrement 2>&1 | tee -a "$work/slap.log" \
        | awk '/Average number of seconds to run all queries/ {print $(NF-1)}'
}
rps() { awk -v o="$2:" '$1 == o {print $2}' <<<"$1"; }
p50() { grep "^$2:" <<<"$1" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p'; }

redis_rows=() db_rows=()
for round in $(seq 1 "$rounds"); do
    # Redis
    for t in $types native; do
        ts="$(date +%s.%N)"
        if [ "$t" = native ]; then
            port=6380
            chroot "$r" redis-server --port 6380 --protected-mode no --save '' >"$work/redis-native.log" 2>&1 &
            pid=$!
        else
            port=6379
            hx run -d --name rd --type "$t" -p 6379:6379 redis --save '' >/dev/null || die "hx run --type $t redis failed"
        fi
        wait_for 600 ping_redis "$port" || die "redis ($t) did not answer"
        ready="$(since "$ts")"
        out="$(rb "$port")"
        grep -q '^SET:' <<<"$out" && grep -q '^GET:' <<<"$out" || die "redis-benchmark against $t printed no SET/GET line"
        if [ "$t" = native ]; then kill "$pid"; wait "$pid" 2>/dev/null; else hx rm -f -v rd >/dev/null; fi
        echo "round $round redis $t (ready in $ready s): $(tr '\n' ' ' <<<"$out")"
        redis_rows+=("$round $t $(rps "$out" SET) $(p50 "$out" SET) $(rps "$out" GET) $(p50 "$out" GET) $ready")
    done
    # MariaDB: the first hx run initialises the volume (the entrypoint's mariadb-install-db);
    # every later server, dom0's too, starts on that data directory.
    for t in $types native; do
        ts="$(date +%s.%N)"
        if [ "$t" = native ]; then
            port=3307
            mount -o loop "$(hx volume inspect benchdb | jq -r '.[0].Mountpoint')" "$m/var/lib/mysql" || die "cannot mount the volume"
            chroot "$m" env MARIADB_ROOT_PASSWORD=bench docker-entrypoint.sh mariadbd --port 3307 >"$work/mariadb-native.log" 2>&1 &
            pid=$!
        else
            port=3306
            hx run -d --name db --type "$t" -m 512m -p 3306:3306 -e MARIADB_ROOT_PASSWORD=bench \
                -v benchdb:/var/lib/mysql mariadb >/dev/null || die "hx run --type $t mariadb failed"
        fi
        wait_for 900 ping_db "$port" || { tail -n 20 "$work/mariadb-native.log" 2>/dev/null; hx logs db 2>&1 | tail -n 20; die "mariadb ($t) did not answer"; }
        ready="$(since "$ts")"
        s="$(slap "$port")"
        [ -n "$s" ] || { tail -n 5 "$work/slap.log"; die "mysqlslap against $t printed no time"; }
        if [ "$t" = native ]; then
            kill "$pid"; wait "$pid" 2>/dev/null
            umount "$m/var/lib/mysql" || die "cannot unmount the volume"
        else
            hx stop -t 120 db >/dev/null; hx rm -f db >/dev/null
        fi
        echo "round $round mariadb $t (ready in $ready s): $s s"
        db_rows+=("$round $t $s $ready")
    done
done
hx volume rm benchdb >/dev/null
for d in "$r" "$m"; do umount "$d/proc" "$d/dev"; done
rm -rf "$work"
ip link del veth-h 2>/dev/null; ip netns del client 2>/dev/null

native_of() { # ROWS... : the native row of ROUND $1
    local want="$1"; shift
    printf '%s\n' "$@" | awk -v r="$want" '$1 == r && $2 == "native"'
}
echo
echo "| round | server | redis SET req/s | p50 ms | / native | redis GET req/s | p50 ms | / native | ready after (s) |"
echo "|---|---|---|---|---|---|---|---|---|"
for row in "${redis_rows[@]}"; do
    read -r round t sr sp gr gp ready <<<"$row"
    read -r _ _ nsr _ ngr _ _ <<<"$(native_of "$round" "${redis_rows[@]}")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$t" "$sr" "$sp" \
        "$(awk -v a="$sr" -v b="$nsr" 'BEGIN {printf "%.2f", a / b}')" "$gr" "$gp" \
        "$(awk -v a="$gr" -v b="$ngr" 'BEGIN {printf "%.2f", a / b}')" "$ready"
done
echo
echo "| round | server | mysqlslap s (average, all queries) | speed / native | ready after (s) |"
echo "|---|---|---|---|---|"
for row in "${db_rows[@]}"; do
    read -r round t s ready <<<"$row"
    read -r _ _ ns _ <<<"$(native_of "$round" "${db_rows[@]}")"
    printf '| %s | %s | %s | %s | %s |\n' "$round" "$t" "$s" "$(awk -v a="$s" -v b="$ns" 'BEGIN {printf "%.2f", b / a}')" "$ready"
done
