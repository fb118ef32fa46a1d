#!/bin/bash
# The compat suite's Redis on Xen (docs/compatibility.md), run inside the lab's dom0:
#   tests/images/compat.sh redis /tmp/redis-layout
#   tests/xen-lab/run --script tests/xen-lab/checks/compat.sh --image redis=/tmp/redis-layout
# UNTESTED: written without a lab run (the lab was in use); not wired into tests/run-all.sh.
# dom0 has no redis-cli: the checks speak redis's inline protocol over bash's /dev/tcp.
# `hx run -d -p 6379:6379 -v redisdata:/data redis --appendonly yes --appendfsync always` (a PVH
# domain, the volume through blkback) answers SET/GET on dom0's localhost and from a client
# namespace; `hx stop` exits 0 and the next container on the volume reads the data; after
# acknowledged writes, `xl destroy` of the domain (Xen's SIGKILL of the VM) loses none of them.
set -u
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
# redis HOST COMMAND...: one inline command, prints the first reply line (CR stripped).
redis() {
    local host=$1; shift
    exec 3<>"/dev/tcp/$host/6379" || return 1
    printf '%s\r\n' "$*" >&3
    local line
    IFS= read -r -t 10 line <&3 || { exec 3<&-; return 1; }
    line="${line%$'\r'}"
    case "$line" in
        \$-1) line="(nil)" ;;
        \$*) IFS= read -r -t 10 line <&3; line="${line%$'\r'}" ;;
    esac
    exec 3<&-
    echo "$line"
}
wait_pong() {
    for _ in $(seq 1 240); do
        [ "$(redis "$1" PING 2>/dev/null)" = "+PONG" ] && return 0
        sleep 1
    done
    return 1
}
run_redis() {
    hx run -d --name "$1" -p 6379:6379 -v redisdata:/data redis --appendonly yes --appendfsync always >/dev/null
}
ip netns add client
ip link add veth-h type veth peer name veth-c
ip link set veth-c netns client
ip addr add 192.168.77.1/24 dev veth-h; ip link set veth-h up
ip -n client addr add 192.168.77.2/24 dev veth-c; ip -n client link set veth-c up; ip -n client link set lo up

t0=$(date +%s)
run_redis r1 && ok "run -d redis --appendonly yes (options after the image go to the entrypoint)" || bad "run r1"
wait_pong 127.0.0.1 && ok "PONG on localhost:6379 ($(( $(date +%s) - t0 )) s after run)" || { bad "no PONG"; hx logs r1 | tail; }
[ "$(redis 127.0.0.1 SET greeting hello-xen)" = "+OK" ] && ok "SET" || bad "SET"
[ "$(ip netns exec client bash -c "$(declare -f redis); redis 192.168.77.1 GET greeting")" = "hello-xen" ] \
    && ok "GET from the client namespace" || bad "GET from the client namespace"
hx stop -t 120 r1 && ok "hx stop" || bad "hx stop"
code=$(hx inspect r1 | jq '.[0].State.ExitCode')
[ "$code" = 0 ] && ok "redis exited 0 on TERM" || bad "exit code $code"
hx logs r1 | grep -q "ready to exit" && ok "redis saved before exiting" || bad "no 'ready to exit' in hx logs"
hx rm r1

run_redis r2 && wait_pong 127.0.0.1 && ok "r2 on the same volume" || bad "r2"
[ "$(redis 127.0.0.1 GET greeting)" = "hello-xen" ] && ok "data kept across stop/rm/run" || bad "data lost across rm"
acked=0
for i in $(seq 1 100); do
    [ "$(redis 127.0.0.1 SET "key:$i" "value:$i")" = "+OK" ] && acked=$((acked + 1))
done
[ "$acked" = 100 ] && ok "100 acknowledged SETs" || bad "only $acked SETs acknowledged"
domid=$(hx inspect r2 | jq -r '.[0].State.DomId')
xl destroy "$domid" && ok "xl destroy $domid (the VM killed)" || bad "xl destroy $domid"
sleep 2
hx rm -f r2 >/dev/null
run_redis r3 && wait_pong 127.0.0.1 && ok "r3 after the kill" || bad "r3"
n=$(redis 127.0.0.1 DBSIZE)
[ "$n" = ":101" ] && ok "all 101 keys recovered" || bad "DBSIZE after the kill: $n (want :101)"
[ "$(redis 127.0.0.1 GET key:100)" = "value:100" ] && ok "the last acknowledged write is there" || bad "key:100 lost"
hx rm -f r3 >/dev/null && ok "rm -f r3" || bad "rm -f r3"
hx volume rm redisdata >/dev/null && ok "volume rm" || bad "volume rm"
xl list
exit $fail
