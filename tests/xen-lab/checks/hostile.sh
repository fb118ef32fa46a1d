#!/bin/bash
# A hostile guest on Xen (issue 9): a workload that writes garbage, 4 KiB values, escape
# sequences, invalid UTF-8 and out-of-range exit codes into its xenstore status nodes, thousands
# of times, tries nodes it does not own, sends raw frames with unknown types and lying lengths,
# floods watches, transactions and its node quota, and floods its console. hx and xenstored stay
# healthy, hx prints no raw ESC and exits with a clean code, caps the logs, and nothing is left
# behind. (Neighbours beside the floods: checks/hostile-neighbours.sh.)
# Needs the static xs-hostile (xenstore-wire's example) at /lab/bin/xs-hostile (--file).
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
H=/lab/bin/xs-hostile
ESC=$'\x1b'
work=$(mktemp -d)
[ -x "$H" ] || { bad "$H missing (tests/xen-lab/run --file TARGET/xs-hostile:$H)"; exit 1; }

# An image holding only the static binary.
mkdir -p "$work/img" && cp "$H" "$work/img/xs-hostile" && tar -C "$work/img" -cf "$work/img.tar" xs-hostile
hx import "$work/img.tar" hostile >/dev/null && ok "import the hostile image" || bad "import"

xenstored_pid() { pidof xenstored || pgrep -f 'bin/xenstored' | head -n 1; }
xs_pid=$(xenstored_pid)
xs_rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$(xenstored_pid)/status" 2>/dev/null; }
# A normal container first: its time is the baseline, and the nodes the first domain of a boot
# leaves for good (/libxl, /vm) are in the snapshot.
t0=$(now)
out=$(hx run --rm busybox echo ok 2>&1)
echo "baseline: hx run --rm busybox echo ok: '$out' in $(elapsed "$t0")s"
echo "xenstored pid $xs_pid, RSS $(xs_rss) before"
snapshot "$work/before"

# xenstore-ls of dom0's subtree answers within 10 s (dom0 has one vCPU under TCG), and timed.
xs_quick() {
    local t0 t
    t0=$(now)
    timeout 5 xenstore-ls /local/domain/0 >/dev/null 2>&1 || { echo "xenstore-ls failed"; return 1; }
    t=$(elapsed "$t0")
    echo "xenstore-ls /local/domain/0: ${t}s"
    awk -v t="$t" 'BEGIN{exit !(t < 10)}'
}

no_esc() { # FILE WHAT
    if grep -q "$ESC" "$1"; then bad "$2: raw ESC in hx's output"; cat -v "$1" | show 5; else ok "$2: no raw ESC"; fi
}

# The hostile workloads run --privileged: every capability in their VM, the strongest guest.
# 1. Status flood in the foreground; the last final status node says `exited 99999`.
t0=$(now)
hx run --rm --privileged --network none --name hs1 hostile /xs-hostile status > "$work/s1.out" 2> "$work/s1.err"; rc=$?
echo "status flood: hx run exit $rc after $(elapsed "$t0")s"
grep '^hostile' "$work/s1.out" | cat -v | sed 's/^/  /'
echo "  hx stderr: $(cat -v "$work/s1.err" | head -c 400)"
case $rc in
    125|7) ok "status flood: hx run exits $rc (clean 125 or the workload's 7)";;
    *) bad "status flood: hx run exits $rc";;
esac
no_esc "$work/s1.err" "status flood: stderr"
grep -q "writes outside data/ (must all be refused): 0 accepted" "$work/s1.out" \
    && ok "xenstored refused every write outside the guest's data/" \
    || bad "writes outside data/: $(grep 'outside data' "$work/s1.out" | cat -v)"
xs_quick && ok "xenstore answers after the status flood" || bad "xenstore slow or dead after the status flood"

# 2. The same, the last final status an init_error whose message carries escape sequences
# (JSON-escaped, so they pass xenstore's byte checks) and a forged line.
hx run -d --privileged --network none --name hs2 hostile /xs-hostile status-escape > /dev/null 2> "$work/r2.err" || bad "run -d hs2: $(cat -v "$work/r2.err")"
code=$(timeout 400 hx wait hs2 2> "$work/w2.err"); rc=$?
echo "escape flood: hx wait '$code' (exit $rc)"
case $code in
    126|125|7) ok "escape flood: exit $code";;
    *) bad "escape flood: hx wait '$code'";;
esac
hx ps -a > "$work/ps.out" 2>&1
hx inspect hs2 > "$work/inspect.out" 2>&1
hx rm -f hs2 > "$work/rm.out" 2>&1
cat "$work/w2.err" "$work/ps.out" "$work/inspect.out" "$work/rm.out" > "$work/s2.all"
no_esc "$work/s2.all" "hx wait/ps/inspect/rm of the hostile container"

# 3. Neighbours beside the floods: not asserted here (tests/xen-lab/checks/hostile-neighbours.sh,
# run by hand). In this lab, containers started while another guest floods fail at random in
# ways hx has not been cleared of (docs/xen-lab.md, "Known lab faults"); on QEMU the same
# property is asserted (hostile_guest.rs a_neighbour_runs_normally_beside_a_flooding_guest).
echo "INFO neighbours beside the floods: not run here (checks/hostile-neighbours.sh; docs/xen-lab.md, Known lab faults)"

# 4. A console flood: escape sequences, invalid UTF-8 and 64 KiB lines for 30 s. hx's monitor
# keeps up, caps the log, exits cleanly and prints no raw ESC; xenstore stays responsive.
# It comes last: the lab's known fault (docs/xen-lab.md) may hit processes started after it.
printf '[log]\nmax_size = "1m"\nmax_file = 2\n' > "$work/log.toml"
HX_CONFIG="$work/log.toml" hx run -d --privileged --network none --name flood hostile /xs-hostile console 30 > /dev/null 2> "$work/f.err" && ok "console flood started" || bad "console flood: $(cat -v "$work/f.err")"
sleep 20
xs_quick && ok "xenstore answers during the console flood" || bad "xenstore slow or dead during the console flood"
clog=$(hx inspect flood 2>/dev/null | jq -r '.[0].Files.Console')
echo "console log during the flood: $(du -cb "$clog"* 2>/dev/null | tail -n 1 | cut -f1) bytes"
code=$(timeout 300 hx wait flood 2>/dev/null); rc=$?
total=$(du -cb "$clog"* 2>/dev/null | tail -n 1 | cut -f1)
echo "console flood: hx wait '$code'; console log after: $total bytes in $(ls "$clog"* 2>/dev/null | wc -l) files"
case $code in 7|125) ok "console flood: exit $code";; *) bad "console flood: hx wait '$code' (exit $rc)";; esac
# Its [log] cap: 1 MiB per file, 2 files (the flood writes ~11 MB).
[ "${total:-0}" -le $((2 * 1024 * 1024 + 65536)) ] && ok "console log within its cap ($total bytes)" || bad "console log $total bytes: over 2 x 1 MiB"
hx logs flood 2>/dev/null | tail -n 1 | cat -v | head -c 200; echo
hx ps -a > "$work/ps4.out" 2>&1; hx inspect flood > "$work/in4.out" 2>&1; hx rm -f flood > "$work/rm4.out" 2>&1
cat "$work/ps4.out" "$work/in4.out" "$work/rm4.out" > "$work/s4.all"
no_esc "$work/s4.all" "hx ps/inspect/rm of the console flooder"

# 5. Healthy and clean afterwards. Crashes in dom0 the kernel saw, for the record.
dmesg | grep -iE 'segfault|general protection|trap|killed process' | tail -n 10 | sed 's/^/dmesg: /'
[ "$(xenstored_pid)" = "$xs_pid" ] && ok "xenstored still runs (pid $xs_pid, RSS $(xs_rss))" || bad "xenstored pid $xs_pid -> '$(xenstored_pid)'"
xs_quick && ok "xenstore answers at the end" || bad "xenstore slow or dead at the end"
for _ in $(seq 20); do snapshot "$work/after"; cmp -s "$work/before" "$work/after" && break; sleep 1; done
if cmp -s "$work/before" "$work/after"; then
    ok "no leftover domains, loop devices, xenstore nodes or containers"
else
    bad "left behind:"; diff "$work/before" "$work/after" | head -n 40 | show 40
fi
hx rmi hostile > /dev/null 2>&1
rm -rf "$work"
exit $fail
