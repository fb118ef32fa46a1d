#!/bin/sh
# The nginx acceptance on Xen, run inside the lab's dom0 by tests/run-all.sh
# (`tests/xen-lab/run --script tests/xen-lab/checks/nginx.sh --image nginx=LAYOUT`, the layout from
# tests/images/nginx.sh): `hx run -d -p 8080:80 nginx` (a PVH domain with a vif on hx0) serves
# dom0's localhost and a client network namespace, `hx logs` shows the access lines, `hx stop`
# frees the port and its DNAT rule, a page from a `-v` directory is served, and `-P` publishes
# the image's port.
set -u
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
wait_page() { # URL NEEDLE [netns]
    i=0
    while [ $i -lt 240 ]; do
        if [ -n "${3:-}" ]; then p=$(ip netns exec "$3" curl -sf --max-time 5 "$1" 2>/dev/null); else p=$(curl -sf --max-time 5 "$1" 2>/dev/null); fi
        case "$p" in *"$2"*) return 0;; esac
        sleep 1; i=$((i + 1))
    done
    return 1
}
ip netns add client
ip link add veth-h type veth peer name veth-c
ip link set veth-c netns client
ip addr add 192.168.77.1/24 dev veth-h; ip link set veth-h up
ip -n client addr add 192.168.77.2/24 dev veth-c; ip -n client link set veth-c up; ip -n client link set lo up

t0=$(date +%s)
hx run -d --name web -p 8080:80 nginx && ok "run -d -p 8080:80 nginx" || bad "run -d"
hx list
wait_page http://127.0.0.1:8080/ "Welcome to nginx" && ok "localhost:8080 serves nginx ($(( $(date +%s) - t0 )) s after run)" || bad "localhost:8080"
wait_page http://192.168.77.1:8080/ "Welcome to nginx" client && ok "client namespace reaches 192.168.77.1:8080" || bad "client namespace"
hx logs web | grep -q '"GET / HTTP/1.1" 200' && ok "hx logs shows access lines" || { bad "hx logs"; hx logs web | tail -5; }
[ "$(hx port web)" = "80/tcp -> 0.0.0.0:8080" ] && ok "hx port" || bad "hx port: $(hx port web)"
hx stop web && ok "hx stop" || bad "hx stop"
if curl -s --max-time 5 http://127.0.0.1:8080/ >/dev/null; then bad "port still answers after stop"; else ok "stop freed the port"; fi
nft list table ip hx 2>/dev/null | grep -q 'dport 8080' && bad "DNAT rule left after stop" || ok "no DNAT rule left"
hx rm web

mkdir -p /root/site; echo '<h1>served from a volume</h1>' > /root/site/index.html
hx run -d --name site -p 8080:80 -v /root/site:/var/www/html:ro nginx && ok "run with -v" || bad "run with -v"
wait_page http://192.168.77.1:8080/ "served from a volume" client && ok "page from the -v directory" || bad "page from -v"
hx rm -f site && ok "rm -f" || bad "rm -f"

# -P publishes the image's ExposedPorts (80/tcp) on a free host port.
hx run -d --name pub -P nginx && ok "run -d -P nginx" || bad "run -d -P"
port=$(hx port pub | sed -n 's|^80/tcp -> 0\.0\.0\.0:||p')
[ -n "$port" ] && ok "-P published 80/tcp on host port $port" || bad "hx port pub: $(hx port pub)"
wait_page "http://192.168.77.1:${port:-0}/" "Welcome to nginx" client && ok "client namespace reaches the -P port" || bad "-P port"
hx rm -f pub && ok "rm -f pub" || bad "rm -f pub"
xl list
# The next check in the same boot may make its own "client" (compat.sh does).
ip link del veth-h 2>/dev/null; ip netns del client 2>/dev/null
exit $fail
