#!/bin/bash
# Control lines on Xen (the xenstore control log, docs/guest-protocol.md): signals sent back to
# back all reach the workload, though one xenstore watch event may cover several. (The order
# they arrive in is not observable: the shell runs pending traps by signal number.)
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
exit $fail
