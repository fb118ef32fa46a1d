#!/bin/bash
# Warm start on Xen (docs/warm-start.md, "Xen: a pool of paused domains"), PVH and PV. With
# HX_WARM=on the first run boots cold and starts a filler, which boots one pool domain and
# pauses it where pv-init waits; the next run takes it (renamed, its disks and vif hot-plugged,
# the go line sent) and behaves as a cold run: output, exit code, a published port, exec, its
# name in `xl list`; two warm runs share no writable state; a killed filler's domain, a stale
# pool (the kernel changed) and `hx system template rm --all` leave no domain of it behind.
# Timing warm against cold is tests/xen-lab/bench.sh's (`--bench`), not this check's.
set -u
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
export HX_WARM=on
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# Waiting domains in the pools of domain type $1 (hx system template ls: ACCEL xen-TYPE, DEVICES pool:N).
pool_count() {
    hx system template ls 2>/dev/null | awk -v a="xen-$1" '$4 == a && $5 ~ /^pool:/ {split($5, p, "[:,]"); n += p[2]} END {print n + 0}'
}
# Until the pool of type $1 holds a domain and no filler runs.
wait_pool() {
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(pool_count "$1")" -ge 1 ] && ! pgrep -f __xen-warm-fill >/dev/null && return 0
        sleep 1
    done
    return 1
}
warm_domains() { xl list | awk 'NR > 1 && $1 ~ /^hx-warm-/ {print $1}'; }
all_pooled() { [ "$(warm_domains | wc -l)" = "$(( $(pool_count pvh) + $(pool_count pv) ))" ]; }

hx system template rm --all >/dev/null 2>&1
[ -z "$(warm_domains)" ] && ok "no pool domain to begin with" || bad "pool domains before the check: $(warm_domains | tr '\n' ' ')"

port=18190
for type in pvh pv; do
    port=$((port + 1))
    targ=(); [ "$type" = pv ] && targ=(--type pv)
    hx system template rm --all >/dev/null 2>&1   # the other type's pool
    out=$(timeout 300 hx -v run --rm "${targ[@]}" --network none busybox echo cold 2>/tmp/warm-err); rc=$?
    [ "$rc" = 0 ] && [ "$out" = cold ] && grep -q "the pool is empty" /tmp/warm-err \
        && ok "$type: the first run boots cold (the pool is empty)" || bad "$type: first run: exit $rc '$out' $(tail -3 /tmp/warm-err)"
    s=$(date +%s%N)
    if wait_pool "$type"; then
        ok "$type: the filler booted a pool domain ($(ms_since "$s") ms after the run returned)"
    else
        bad "$type: no pool domain after 300 s: $(hx system template ls 2>&1 | tail -n +2); $(cat /var/lib/hx/xen-warm/*/fill.log 2>/dev/null | tail -5)"
        continue
    fi
    d=$(warm_domains | head -1)
    xl list "$d" | awk 'NR == 2 {exit !($5 ~ /p/)}' && ok "$type: $d waits paused" || bad "$type: $d is not paused: $(xl list "$d")"

    # Taken: same output and exit code as a cold run; it leaves a file in its writable layer.
    # The monitor's log says the pool's domain ran it (a failed adoption boots cold).
    domid=$(xl domid "$d")
    out=$(timeout 300 hx -v run --name "w1-$type" "${targ[@]}" --network none busybox sh -c 'echo warm; echo secret > /marker; exit 7' 2>/tmp/warm-err); rc=$?
    log="/var/lib/hx/containers/$(hx inspect -f '{{.Id}}' "w1-$type" 2>/dev/null)/monitor.log"
    [ "$rc" = 7 ] && [ "$out" = warm ] && grep -q "took pool domain $domid" /tmp/warm-err && grep -q "domain $domid taken from the warm pool" "$log" \
        && ! grep -q "booting cold" "$log" \
        && ok "$type: a warm run in pool domain $domid: output, exit 7" || bad "$type: warm run: exit $rc '$out' $(tail -3 /tmp/warm-err) $(grep -a warm "$log" 2>&1 | tail -3)"
    hx rm "w1-$type" >/dev/null || bad "$type: rm w1-$type"
    xl list | awk -v d="$domid" 'NR > 1 && $2 == d {f = 1} END {exit !f}' && bad "$type: domain $domid is still there" || ok "$type: the taken domain is gone with its container"
    wait_pool "$type" || bad "$type: no refill"
    out=$(timeout 300 hx -v run --rm "${targ[@]}" --network none busybox sh -c 'cat /marker 2>/dev/null || echo absent' 2>/tmp/warm-err)
    [ "$out" = absent ] && grep -q "took pool domain" /tmp/warm-err \
        && ok "$type: the next warm run does not see the last one's file" || bad "$type: second warm run: '$out' $(tail -3 /tmp/warm-err)"

    # A detached warm container on the default network with a published port.
    wait_pool "$type" || bad "$type: no refill"
    c="warm-$type"
    timeout 300 hx -v run -d --name "$c" "${targ[@]}" -p "$port:80" busybox sh -c \
        "mkdir -p /www; echo page-$type > /www/index.html; exec httpd -f -p 80 -h /www" >/dev/null 2>/tmp/warm-err \
        && grep -q "took pool domain" /tmp/warm-err && ok "$type: run -d -p, warm" || bad "$type: run -d -p: $(tail -3 /tmp/warm-err)"
    page=""
    for _ in $(seq 60); do page=$(curl -s -m 5 "http://127.0.0.1:$port/"); [ -n "$page" ] && break; sleep 1; done
    [ "$page" = "page-$type" ] && ok "$type: the published port answers" || bad "$type: port $port: '$page'"
    [ "$(timeout 60 hx exec "$c" cat /www/index.html 2>&1)" = "page-$type" ] && ok "$type: exec" || bad "$type: exec: $(timeout 60 hx exec "$c" cat /www/index.html 2>&1)"
    xl domid "$c" >/dev/null 2>&1 && ok "$type: xl list names it $c" || bad "$type: no domain named $c: $(xl list)"
    log="/var/lib/hx/containers/$(hx inspect --format '{{.Id}}' "$c" 2>/dev/null)/monitor.log"
    grep -q "taken from the warm pool" "$log" && ! grep -q "booting cold" "$log" \
        && ok "$type: the monitor adopted the pool's domain" || bad "$type: not adopted: $(tail -5 "$log" 2>&1)"
    echo "INFO $type: the warm start in the monitor's log: $(grep -aE 'taken from|running after|workload started' "$log" 2>/dev/null | sed 's/.*INFO [^ ]* //' | tr '\n' ';')"
    hx rm -f "$c" >/dev/null && ! xl domid "$c" >/dev/null 2>&1 && ok "$type: rm -f: the domain is gone" || bad "$type: rm -f"
    # The refill that taking the domain started ends before the next type's pool is removed.
    wait_pool "$type" || bad "$type: no refill after rm -f"
done

# A filler killed while it boots leaves a domain no pool holds: prune destroys it.
hx system template rm --all >/dev/null
timeout 300 hx run --rm --network none busybox true >/dev/null || bad "kill: cold run"
for _ in $(seq 100); do [ -n "$(warm_domains)" ] && break; sleep 0.1; done
pkill -9 -f __xen-warm-fill && ok "the filler killed while its domain boots ($(warm_domains | tr '\n' ' '))" || bad "no filler to kill"
sleep 1
[ "$(warm_domains | wc -l)" -gt "$(pool_count pvh)" ] && ok "the killed filler left an orphan domain" \
    || bad "no orphan to sweep: domains $(warm_domains | tr '\n' ' '), pool $(pool_count pvh)"
hx system template prune >/dev/null || bad "prune after the kill"
all_pooled && ok "after prune every pool domain is in a pool ($(warm_domains | wc -l))" || bad "orphans after prune: $(warm_domains | tr '\n' ' ') pools: $(hx system template ls)"

# A changed kernel makes a new pool; the old one's domain goes with the refill.
hx system template rm --all >/dev/null
timeout 300 hx run --rm --network none busybox true >/dev/null
wait_pool pvh || bad "stale: no pool"
old=$(warm_domains | head -1)
kernel=$(sed -n 's/.*"kernel": *"\([^"]*\)".*/\1/p' /var/lib/hx/xen-warm/*/shape.json | head -1)
touch "$kernel"
out=$(timeout 300 hx -v run --rm --network none busybox echo again 2>/tmp/warm-err)
[ "$out" = again ] && grep -q "the pool is empty" /tmp/warm-err && ok "stale: after the kernel changed, a cold run" || bad "stale: '$out' $(tail -3 /tmp/warm-err)"
gone=0
for _ in $(seq 300); do ! xl list "$old" >/dev/null 2>&1 && [ "$(pool_count pvh)" -ge 1 ] && { gone=1; break; }; sleep 1; done
[ "$gone" = 1 ] && ! hx system template ls | grep -q stale && ok "stale: the old pool's $old is gone, a new pool waits" \
    || bad "stale: $old $(xl list "$old" 2>&1 | tail -1); $(hx system template ls)"

hx system template rm --all >/dev/null || bad "rm --all"
[ -z "$(warm_domains)" ] && ok "rm --all: no pool domain left" || bad "left: $(warm_domains | tr '\n' ' ')"
left=$(xl list | awk 'NR > 1 && $1 ~ /^(hx-warm-|warm-|w1-)/')
[ -z "$left" ] && ok "no domain of this check left" || bad "domains left: $left"
exit $fail
