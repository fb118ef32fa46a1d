#!/bin/bash
# Docker on Xen, inside the lab's dom0 (tests/run-all.sh: `tests/xen-lab/run --extras --file
# hx-runtime:/usr/local/bin/hx-runtime --script .../docker.sh`): Debian's
# docker.io and containerd (build-extras.sh) with hx-runtime registered as `hx` (PVH) and
# `hx-pv` (PV, through HX_CONFIG's `[xen] type`): `docker run --runtime hx` of busybox gives
# the output and exit code, each container is a domain of its own, `-p 8080:80` busybox httpd
# answers at dom0's 127.0.0.1 (docker-proxy) and from another network namespace (docker's
# DNAT), `docker logs` has the access lines, `docker stop` sends `--stop-signal`, `docker rm -f`
# leaves no domain, vif, loop device or xenstore node. nginx through docker is
# toolstack/tests/docker.rs's (QEMU): `docker load` of it took minutes under TCG.
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
use_extras || exit 1

d=/lab/disk/work/docker
mkdir -p "$d" /etc/hx
cat > /etc/hx/pv.toml <<'EOF'
[xen]
type = "pv"
EOF
cat > /usr/local/bin/hx-runtime-pv <<'EOF'
#!/bin/sh
HX_CONFIG=/etc/hx/pv.toml exec /usr/local/bin/hx-runtime "$@"
EOF
chmod +x /usr/local/bin/hx-runtime-pv
cat > "$d/daemon.json" <<'EOF'
{"runtimes": {"hx": {"path": "/usr/local/bin/hx-runtime"}, "hx-pv": {"path": "/usr/local/bin/hx-runtime-pv"}}}
EOF
export DOCKER_HOST="unix://$d/docker.sock"
snapshot /tmp/docker-before
cat > "$d/containerd.toml" <<EOF
version = 2
root = "$d/containerd-root"
state = "$d/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.ttrpc.sock"
EOF
containerd --config "$d/containerd.toml" > "$d/containerd.log" 2>&1 &
containerd_pid=$!
dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/docker.pid" -H "$DOCKER_HOST" \
    --containerd "$d/containerd.sock" --config-file "$d/daemon.json" --storage-driver overlay2 \
    > "$d/dockerd.log" 2>&1 &
t0=$(date +%s)
for _ in $(seq 1 120); do docker version >/dev/null 2>&1 && break; sleep 1; done
if docker version >/dev/null 2>&1; then ok "dockerd answers ($(( $(date +%s) - t0 )) s)"; else
    bad "dockerd did not start"; tail -20 "$d/dockerd.log" | show; tail -10 "$d/containerd.log" | show; exit 1
fi

t0=$(date +%s.%N)
# busybox.tar is ctr's too, below.
if hx save busybox -o /lab/disk/work/busybox.tar && t1=$(date +%s.%N) && docker load -q -i /lab/disk/work/busybox.tar >/dev/null; then
    ok "docker load of hx save busybox (save $(elapsed "$t0" "$t1") s, load $(elapsed "$t1") s)"
else
    bad "docker load busybox"
fi

domains() { xl list | awk 'NR>2' | wc -l; }
for rt in hx:PVH hx-pv:PV; do
    type=${rt#*:} rt=${rt%:*}
    t0=$(date +%s.%N)
    out=$(docker run --rm --runtime "$rt" busybox sh -c 'echo hello from a $(cat /sys/hypervisor/guest_type) guest; exit 3' 2>&1); rc=$?
    [ "$out" = "hello from a $type guest" ] && ok "$rt: docker run output, a $type domain ($(elapsed "$t0") s)" || bad "$rt: docker run output: $out"
    [ "$rc" = 3 ] && ok "$rt: exit code 3" || bad "$rt: exit code $rc, expected 3"
done
out=$(docker run --rm --runtime hx busybox nosuchcommand 2>&1); rc=$?
[ "$rc" = 127 ] && ok "hx: missing command exits 127" || bad "hx: missing command: exit $rc: $out"
[ "$(domains)" = 0 ] && ok "--rm runs left no domain" || { bad "domains left after --rm"; xl list | show; }

# A web server published: a domain per container, reached through docker's own proxy and
# DNAT; `docker stop` sends --stop-signal (SIGQUIT ends httpd: 131, well before the timeout's
# SIGKILL, 137). Under docker's --init (docker-init, tini, bound from dom0): httpd as PID 1
# would ignore a SIGQUIT it has no handler for, as with runc; tini forwards it and exits 131.
ip netns add dk-client
ip link add dk-h type veth peer name dk-c
ip link set dk-c netns dk-client
ip addr add 192.168.78.1/24 dev dk-h; ip link set dk-h up
ip -n dk-client addr add 192.168.78.2/24 dev dk-c; ip -n dk-client link set dk-c up; ip -n dk-client link set lo up
wait_page() { # URL NEEDLE [netns]
    for _ in $(seq 1 240); do
        if [ -n "${3:-}" ]; then p=$(ip netns exec "$3" curl -sf --max-time 5 "$1" 2>/dev/null); else p=$(curl -sf --max-time 5 "$1" 2>/dev/null); fi
        case "$p" in *"$2"*) return 0;; esac
        sleep 1
    done
    return 1
}
t0=$(date +%s.%N)
if docker run -d --runtime hx --init --name web --cpus 0.5 --cpu-shares 512 --stop-signal SIGQUIT -p 8080:80 busybox \
    sh -c 'mkdir -p /www; echo hx-web > /www/index.html; exec httpd -f -v -p 80 -h /www' >/dev/null; then
    ok "docker run -d --runtime hx --init --cpus 0.5 --cpu-shares 512 --stop-signal SIGQUIT -p 8080:80 busybox httpd"
else bad "docker run -d httpd"; fi
dom=$(xl list | awk 'NR>2 {print $1}')
[ "$(echo "$dom" | grep -c .)" = 1 ] && ok "the container is domain $dom" || { bad "expected one domain"; xl list | show; }
c2=$(xl sched-credit2 -d "$dom" | awk 'NR==2 {print $3, $4}')
[ "$c2" = "128 50" ] && ok "--cpus 0.5 --cpu-shares 512: credit2 weight 128, cap 50" || bad "credit2 weight and cap: '$c2'"
wait_page http://127.0.0.1:8080/ hx-web && ok "127.0.0.1:8080 serves the page ($(elapsed "$t0") s after run)" || { bad "127.0.0.1:8080"; docker logs web 2>&1 | show; }
wait_page http://192.168.78.1:8080/ hx-web dk-client && ok "another namespace reaches 192.168.78.1:8080" || bad "from dk-client"
docker logs web 2>&1 | grep -q 'response:200' && ok "docker logs has httpd's access lines" || { bad "docker logs"; docker logs web 2>&1 | show; }
out=$(docker exec web sh -c 'echo exec-in-$(cat /sys/hypervisor/type); exit 4' 2>&1); rc=$?
[ "$rc" = 4 ] && [ "$out" = "exec-in-xen" ] && ok "docker exec (output, exit 4)" || bad "docker exec: rc $rc: $out"
# docker update reaches the runtime's `update` (containerd's runc shim, resources on stdin):
# the domain's balloon target, then credit2's cap. Two updates, the memory one first: the
# balloon's way down is slow in the lab (shadow paging under TCG), and a guest capped at 25% of
# a vCPU beside a second lab once gave back 4 of 32 MiB in 240 s. The second update carries
# the memory limit again (docker sends the whole document): it must stay.
if docker update --memory 112m --memory-swap -1 web >/dev/null; then ok "docker update --memory 112m web"; else bad "docker update --memory"; fi
wait_domain_mem "$dom" 112 && ok "xl list: domain ballooned to $(domain_mem "$dom") MiB" || bad "domain memory $(domain_mem "$dom") MiB after docker update --memory 112m"
if docker update --cpus 0.25 web >/dev/null; then ok "docker update --cpus 0.25 web"; else bad "docker update --cpus"; fi
cap=$(xl sched-credit2 -d "$dom" | awk 'NR==2 {print $4}')
[ "$cap" = 25 ] && ok "credit2 cap 25" || bad "credit2 cap '$cap' after docker update --cpus 0.25"
m=$(domain_mem "$dom"); [ -n "$m" ] && [ "$m" -le 112 ] && [ "$m" -ge 110 ] && ok "still $m MiB after the --cpus update" || bad "domain memory $m MiB after docker update --cpus (112 expected)"
wait_page http://127.0.0.1:8080/ hx-web && ok "httpd still serves after the update" || bad "httpd after update"
[ "$(docker inspect -f '{{.Config.StopSignal}}' web)" = SIGQUIT ] && ok "StopSignal SIGQUIT" || bad "StopSignal: $(docker inspect -f '{{.Config.StopSignal}}' web)"
t0=$(date +%s.%N)
docker stop -t 60 web >/dev/null && t=$(elapsed "$t0") && code=$(docker inspect -f '{{.State.ExitCode}}' web)
if [ "${code:-}" = 131 ] && awk -v t="${t:-99}" 'BEGIN{exit !(t < 50)}'; then ok "docker stop: SIGQUIT ended httpd, exit 131 ($t s)"
else bad "docker stop: exit ${code:-?} after ${t:-?} s (137 = the timeout's SIGKILL)"; docker logs web 2>&1 | show 5; fi
curl -s --max-time 5 http://127.0.0.1:8080/ >/dev/null && bad "port 8080 still answers after stop" || ok "stop freed the port"
docker rm web >/dev/null && ok "docker rm web" || bad "docker rm"
domain_gone "$dom" 20 && ok "no domain left" || { bad "domain $dom left"; xl list | show; }
ip link | grep -q 'vif' && { bad "a vif is left"; ip -br link | show; } || ok "no vif left"

# A container on two networks (docker network connect before start, as compose does for a
# service on two): a vif per network, each with docker's address there, reached from dom0
# through each network's bridge.
docker network create dk-a >/dev/null && docker network create dk-b >/dev/null || bad "docker network create"
if docker create --runtime hx --name two --network dk-a busybox sh -c "mkdir -p /www && echo two-nets > /www/index.html && exec httpd -f -p 80 -h /www" >/dev/null \
    && docker network connect dk-b two && docker start two >/dev/null; then
    ok "docker create, network connect, start"
else bad "two networks: create, connect, start"; fi
for n in dk-a dk-b; do
    ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$n\").IPAddress}}" two)
    wait_page "http://$ip/" two-nets && ok "two: answers on $n at $ip" || { bad "two: nothing on $n at '$ip'"; docker logs two 2>&1 | show; }
done
dom=$(xl list | awk 'NR>2 {print $1}')
vifs=$(xl network-list "$dom" 2>&1 | awk 'NR>1' | wc -l)
[ "$vifs" = 2 ] && ok "domain $dom has two vifs" || { bad "domain $dom has $vifs vifs"; xl network-list "$dom" 2>&1 | show; }
docker rm -f two >/dev/null && docker network rm dk-a dk-b >/dev/null && ok "docker rm -f two, network rm" || bad "rm two"
domain_gone "$dom" 20 && ok "no domain left" || { bad "domain $dom left"; xl list | show; }
ip link | grep -q 'vif' && { bad "a vif is left"; ip -br link | show; } || ok "no vif left"

ip netns del dk-client; ip link del dk-h 2>/dev/null

# The same containerd through hx's shim v2 (containerd-shim-hx-v2 on its PATH): ctr's verbs.
ctr() { command ctr -a "$d/containerd.sock" "$@"; }
bb=docker.io/library/busybox:latest
ctr images import "/lab/disk/work/busybox.tar" >/dev/null && ok "ctr images import" || bad "ctr images import"
t0=$(date +%s.%N)
out=$(ctr run --rm --runtime io.containerd.hx.v2 "$bb" c1 sh -c 'echo shim on a $(cat /sys/hypervisor/guest_type) guest; exit 5' 2>&1); rc=$?
[ "$out" = "shim on a PVH guest" ] && [ "$rc" = 5 ] && ok "ctr run --rm: output and exit 5 ($(elapsed "$t0") s)" || bad "ctr run: rc $rc: $out"
if ctr run -d --runtime io.containerd.hx.v2 "$bb" c2 sleep 600 >/dev/null; then ok "ctr run -d"; else bad "ctr run -d"; fi
out=$(ctr task exec --exec-id e1 c2 sh -c 'echo exec; exit 6' 2>&1); rc=$?
[ "$out" = exec ] && [ "$rc" = 6 ] && ok "ctr task exec (output, exit 6)" || bad "ctr task exec: rc $rc: $out"
ctr task ps c2 | grep -q . && ok "ctr task ps" || bad "ctr task ps"
ctr task pause c2 && ctr task ls | grep -q 'c2.*PAUSED' && ctr task resume c2 && ok "ctr task pause/resume" || bad "ctr task pause/resume: $(ctr task ls 2>&1)"
ctr task kill -s KILL c2
for _ in $(seq 1 30); do ctr task ls | grep -q 'c2.*STOPPED' && break; sleep 1; done
ctr task delete c2 >/dev/null && ctr container delete c2 && ok "ctr task kill -s KILL, delete" || bad "ctr delete: $(ctr task ls 2>&1)"
[ "$(domains)" = 0 ] && ok "ctr left no domain" || { bad "domains left after ctr"; xl list | show; }
kill "$(cat "$d/docker.pid")"; for _ in $(seq 1 30); do [ -e "$d/docker.pid" ] || break; sleep 1; done
kill "$containerd_pid"; wait "$containerd_pid" 2>/dev/null
snapshot /tmp/docker-after
# The parents libxl makes at its first domain of the boot (when this script runs alone).
for f in /tmp/docker-before /tmp/docker-after; do grep -vx -e /libxl -e /vm -e /local/domain/0/device-model "$f" > "$f.x"; done
if diff /tmp/docker-before.x /tmp/docker-after.x > /tmp/docker-diff; then ok "no domain, loop device, xenstore node or hx record left"; else bad "leftovers"; show < /tmp/docker-diff; fi
exit $fail
