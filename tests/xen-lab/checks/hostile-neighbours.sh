#!/bin/bash
# Neighbours beside a hostile guest on Xen, run by hand (not in CI: docs/xen-lab.md, "Known lab
# faults"). ROUNDS times: a status/xenstore flood (xs-hostile status), a console flood
# (xs-hostile console 40) or a benign console flood (busybox `yes`), and beside it a plain
# `hx run busybox echo ok` bounded by 90 s. Prints each result; on a failure, what hx, the
# domains, the backends and the hx processes (threads, wait channels) look like, twice.
#   tests/xen-lab/run --no-suite --file TARGET/xs-hostile:/lab/bin/xs-hostile \
#       --script tests/xen-lab/checks/hostile-neighbours.sh
# Needs the static xs-hostile at /lab/bin/xs-hostile (scripts/build-xs-hostile.sh).
set -u
. /lab/lib.sh
H=/lab/bin/xs-hostile
rounds=${ROUNDS:-3}
work=$(mktemp -d)
mkdir -p "$work/img" && cp "$H" "$work/img/xs-hostile" && tar -C "$work/img" -cf "$work/img.tar" xs-hostile
hx import "$work/img.tar" hostile >/dev/null
echo "baseline: $(hx run --rm busybox echo ok 2>&1)"
failed=0
diag() {
    echo "--- processes"; ps -eo pid,ppid,stat,wchan:24,etime,args | grep -E 'hx|xl|xenconsoled|xenstored|qemu' | grep -v grep | cut -c1-220
    echo "--- xl list"; timeout 20 xl list 2>&1
    for d in /var/lib/hx/containers/*/; do
        echo "--- $d: $(jq -c '{name,status,pid,domid,error}' "$d/state.json" 2>/dev/null)"
        tail -n 8 "$d/monitor.log" 2>/dev/null | cut -c1-220
    done
    echo "--- backends"; timeout 20 xenstore-ls -f /local/domain/0/backend 2>&1 | grep -E "/state|hotplug-status|physical-device " | tail -30
    for p in $(pgrep -f '^/usr/local/bin/hx'); do
        echo "pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-120)"
        for t in /proc/"$p"/task/*; do echo "  task ${t##*/} $(cut -d' ' -f3 "$t/stat") $(cat "$t/wchan")"; done
    done
    dmesg | grep -iE 'segfault|general protection' | tail -n 5
}
for r in $(seq "$rounds"); do
    for load in status console benign; do
        case $load in
            status) hx run -d --privileged --network none --name load hostile /xs-hostile status >/dev/null 2>&1;;
            console) hx run -d --privileged --network none --name load hostile /xs-hostile console 40 >/dev/null 2>&1;;
            benign) hx run -d --network none --name load busybox sh -c 'yes "plain text line padding padding padding padding" | head -c 8000000' >/dev/null 2>&1;;
        esac
        sleep 5
        t0=$(now)
        timeout -s KILL 90 hx run --name nb busybox echo ok > "$work/n.out" 2> "$work/n.err"; rc=$?
        echo "round $r beside $load: exit $rc, output '$(head -c 100 "$work/n.out" | cat -v)' after $(elapsed "$t0")s $(head -c 200 "$work/n.err" | cat -v)"
        if [ "$rc:$(cat "$work/n.out")" != "0:ok" ]; then
            failed=$((failed + 1)); diag; sleep 30; echo "--- 30 s later"; diag
        fi
        timeout 60 hx rm -f nb >/dev/null 2>&1
        timeout 200 hx wait load >/dev/null 2>&1; timeout 60 hx rm -f load >/dev/null 2>&1
    done
done
echo "neighbours that failed: $failed of $((rounds * 3))"
hx rmi hostile >/dev/null 2>&1
rm -rf "$work"
exit 0
