#!/bin/bash
# Control and input on Xen. Signals sent back to back all reach the workload, though one
# xenstore watch event may cover several (the control log, docs/guest-protocol.md; the order
# they arrive in is not observable: the shell runs pending traps by signal number). `hx run -i`
# carries stdin over the console, its end as a `stdin-eof` control line; `-it` gives the
# workload a terminal whose input and exit code come back.
set -u
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
hx run -d --name sig busybox sh -c 'trap "echo got-usr1" USR1; trap "echo got-usr2" USR2; trap "echo got-hup" HUP; echo ready; while :; do sleep 1; done' >/dev/null \
    && ok "run -d" || bad "run -d"
for _ in $(seq 120); do hx logs sig 2>/dev/null | grep -q ready && break; sleep 1; done
hx kill -s USR1 sig >/dev/null; hx kill -s USR2 sig >/dev/null; hx kill -s HUP sig >/dev/null
for _ in $(seq 20); do hx logs sig | grep -q got-hup && break; sleep 1; done
got="$(hx logs sig | grep '^got-' | sort | tr '\n' ' ')"
[ "$got" = "got-hup got-usr1 got-usr2 " ] && ok "three signals sent back to back all delivered" || bad "delivered: '$got'"
hx rm -f sig >/dev/null && ok "rm -f" || bad "rm -f"

out=$(printf 'abc\ndef\n' | hx run --rm -i busybox sh -c 'read x; echo "got $x"; cat; exit 4'); rc=$?
[ "$rc:$out" = "$(printf '4:got abc\ndef')" ] && ok "-i: stdin and its end reach the workload, exit 4" || bad "-i: exit $rc, output '$out'"
head -c 200000 /dev/urandom > /tmp/blob
want=$(sha256sum < /tmp/blob | cut -d' ' -f1)
got=$(hx run --rm -i busybox sha256sum < /tmp/blob | cut -d' ' -f1)
[ "$got" = "$want" ] && ok "-i: 200 KB of binary input arrive intact" || bad "-i: sha256 $got, want $want"
out=$(printf 'echo $((6*7))\nexit 5\n' | script -qec "hx run --rm -it busybox sh" /dev/null); rc=$?
case "$rc:$out" in 5:*42*) ok "-it: a terminal session, exit 5";; *) bad "-it: exit $rc, output '$out'";; esac

# hx console re-attaches to an -it container whose hx run went away (killed).
sleep 600 | script -qec "hx run -it --name ia busybox sh" /dev/null > /tmp/ia.out 2>&1 &
for _ in $(seq 120); do hx logs ia 2>/dev/null | grep -q '/ # ' && break; sleep 1; done
pkill -9 -f "hx run -it --name ia"; pkill -f "sleep 600"
sleep 1
out=$(printf 'echo $((7*6))\nexit 3\n' | timeout 120 hx console ia); rc=$?
case "$rc:$out" in 0:*42*) ok "hx console: keys reach an -it container after its hx run was killed";; *) bad "hx console: exit $rc, output '$out'";; esac
code=$(timeout 60 hx wait ia)
[ "$code" = 3 ] && ok "hx wait: the session's exit code 3" || bad "hx wait: '$code'"
hx rm -f ia >/dev/null

# --network ns:PATH, what hx-runtime does under docker: the domain's vif leaves dom0's namespace
# for one someone else made and is mirrored to that namespace's veth (netns_link.rs), so the
# namespace's own address serves; rm leaves the veth as it was.
ip netns add hxns
ip link add hxns-h type veth peer name eth0 netns hxns
ip addr add 10.98.0.1/24 dev hxns-h && ip link set hxns-h up
ip -n hxns addr add 10.98.0.2/24 dev eth0 && ip -n hxns link set eth0 up && ip -n hxns link set lo up
ip -n hxns route add default via 10.98.0.1
for type in pvh pv; do
    hx run -d --type "$type" --name "ns-$type" --network ns:/run/netns/hxns busybox \
        sh -c "mkdir /www && echo hello-$type > /www/index.html && exec httpd -f -p 80 -h /www" >/dev/null \
        && ok "$type: run -d --network ns:PATH" || bad "$type: run -d --network ns:PATH"
    got=""
    for _ in $(seq 60); do
        got=$(curl -sf --max-time 3 http://10.98.0.2/ 2>/dev/null) && [ -n "$got" ] && break
        sleep 1
    done
    [ "$got" = "hello-$type" ] && ok "$type: the namespace's address reaches the domain's server" \
        || bad "$type: curl http://10.98.0.2/ gave '$got'; $(ip -n hxns -br link | tr '\n' ';')"
    ip -n hxns -br link | grep -q '^hxtap0' && ok "$type: the vif lives in the namespace as hxtap0" \
        || bad "$type: no hxtap0 in the namespace: $(ip -n hxns -br link | tr '\n' ';')"
    hx rm -f "ns-$type" >/dev/null || bad "$type: rm -f"
    left="$(ip -n hxns -br link | grep -c '^hxtap0'):$(tc -n hxns qdisc show dev eth0 ingress | grep -c ingress)"
    [ "$left" = 0:0 ] && ok "$type: rm -f leaves the namespace's veth as it was" \
        || bad "$type: after rm -f: hxtap0 count:ingress qdiscs = $left"
    xl list | grep -q "ns-$type" && bad "$type: domain left" || true
done
ip netns del hxns; ip link del hxns-h 2>/dev/null
exit $fail
