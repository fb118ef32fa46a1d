#!/bin/bash
# xl's list -l, config, create -n and save/restore as hx does them (docs/cli.md, "Xen
# administration"), compared with xl 4.17 on the same domains: an ordinary PV domain from an
# xl.cfg file whose /init counts on its console (Debian's kernel, which dom0 boots too: a
# kernel other than hx's), and an hx container. One boot of each.
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
t0=$(date +%s)
w=/lab/disk/work/xl-save
mkdir -p "$w"
kernel=/lab/disk/dom0-vmlinuz
[ -f "$kernel" ] || { bad "no $kernel (tests/xen-lab/run puts dom0's kernel there)"; exit 1; }

# The container first: it boots while the rest is prepared.
hx run -d -m 128m --name xsc busybox sh -c 'while :; do sleep 1; done' >/dev/null || bad "run -d xsc"

# --- the ordinary domain: /init counts once a second, keeping the count in a file too
busybox_initramfs "$w/xs.cpio.gz" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs run /run
echo "XS-BOOT"
i=0
while :; do
    i=$((i + 1)); echo "$i" > /run/count
    echo "XS-COUNT $i $(/bin/busybox cat /run/count)"
    /bin/busybox sleep 1
done
EOF
cat > "$w/xs.cfg" <<EOF
name = "xs"
type = "pv"
kernel = "$kernel"
ramdisk = "$w/xs.cpio.gz"
extra = "console=hvc0 quiet"
memory = 128
EOF
# Parsed only (create -n): a PVH domain with a disk and a vif, every action given.
cat > "$w/dry.cfg" <<EOF
name = "dry"
type = "pvh"
kernel = "$HX_LIB/vmlinux"
ramdisk = "$w/xs.cpio.gz"
root = "/dev/xvda"
extra = "console=hvc0"
memory = 64
maxmem = 96
vcpus = 2
maxvcpus = 3
disk = [ 'format=raw, vdev=xvda, access=rw, target=$w/none.img' ]
vif = [ 'mac=00:16:3e:01:02:03,bridge=hx0' ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "preserve"
EOF
log="$CONSOLE_DIR/guest-xs.log"
rm -f "$log"
last_count() { grep -a -o 'XS-COUNT [0-9]*' "$log" 2>/dev/null | tail -1 | awk '{print $2}'; }
count_above() { # N SECS: waits for a count above N
    local i c
    for ((i = 0; i < $2; i++)); do
        c=$(last_count); [ -n "$c" ] && [ "$c" -gt "$1" ] && return 0
        sleep 1
    done
    return 1
}
boots() { grep -a -c XS-BOOT "$log" 2>/dev/null; }
differ() { diff <(echo "$1") <(echo "$2") | sed 's/^</hx:/; s/^>/xl:/' | show 40; }
step() { echo "    ($1: $(( $(date +%s) - t0 )) s so far)"; }

# --- create -n: libxl's JSON of the parsed config, as xl prints it (the UUID is random per run)
for args in "$w/xs.cfg" "$w/dry.cfg" "$w/xs.cfg vcpus=2 memory=100"; do
    # shellcheck disable=SC2086
    h=$(hx create -n $args 2>/dev/null | grep -v '"uuid":'); x=$(xl create -n $args 2>/dev/null | grep -v '"uuid":')
    lbl="${args//$w\//}"
    [ -n "$h" ] && [ "$h" = "$x" ] && ok "create -n $lbl: the same JSON as xl's (uuid aside)" || { bad "create -n $lbl differs from xl's"; differ "$h" "$x"; }
done
xl list dry >/dev/null 2>&1 && bad "create -n created a domain" || ok "create -n created nothing"

# -F (foreground monitor) and -e (no monitor), on a paused domain that never runs
printf 'name = "fg"\ntype = "pvh"\nkernel = "%s"\nramdisk = "%s"\nmemory = 48\n' "$HX_LIB/vmlinux" "$w/xs.cpio.gz" > "$w/fg.cfg"
monitors() { pgrep -f "__xl-monitor [0-9]+ $w/fg.cfg" | wc -l; }
hx create -F -p -q "$w/fg.cfg" & fpid=$!
for ((i = 0; i < 100; i++)); do xl domid fg >/dev/null 2>&1 && break; sleep 0.2; done
nmon=$(monitors)
xl destroy fg >/dev/null 2>&1
for ((i = 0; i < 100; i++)); do kill -0 "$fpid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$fpid" 2>/dev/null && { bad "create -F still runs after its domain was destroyed"; kill "$fpid"; } || { wait "$fpid"; rc=$?; [ "$rc" = 0 ] && [ "$nmon" = 0 ] && ok "create -F: in the foreground until the domain was gone (exit 0, no detached monitor)" || bad "create -F: exit $rc, $nmon monitors"; }
hx create -e -p -q "$w/fg.cfg"; rc=$?
nmon=$(monitors)
[ "$rc" = 0 ] && xl domid fg >/dev/null 2>&1 && [ "$nmon" = 0 ] && ok "create -e: the domain, no monitor" || bad "create -e: exit $rc, $nmon monitors"
xl destroy fg >/dev/null 2>&1

out=$(hx create -q "$w/xs.cfg" 2>&1) && ok "create xs" || bad "create xs: $out"
count_above 1 240 && ok "xs counts on its console" || { bad "xs did not count"; show < "$log"; }
end=$((SECONDS + 240))
while [ $SECONDS -lt $end ]; do timeout 20 hx exec xsc true 2>/dev/null && break; sleep 1; done
cid=$(hx list --json | jq -r '.[] | select(.name == "xsc") | .container_id')
[ -n "$cid" ] && ok "xsc runs" || bad "xsc has no domain"

step "both booted"
# --- list -l / -v and config, against xl's own output
h=$(hx list -l xs 2>&1); x=$(xl list -l xs 2>&1)
[ "$(echo "$h" | jq -S . 2>&1)" = "$(echo "$x" | jq -S . 2>&1)" ] && [ -n "$h" ] && ok "list -l xs: the same JSON as xl list -l" || { bad "list -l xs differs"; differ "$h" "$x"; }
[ "$h" = "$x" ] && ok "list -l xs: byte for byte" || { bad "list -l xs: formatted differently from xl's"; differ "$h" "$x"; }
h=$(hx list -l 2>&1 | jq -S . 2>&1); x=$(xl list -l 2>&1 | jq -S . 2>&1)
[ -n "$h" ] && [ "$h" = "$x" ] && ok "list -l (xs and xsc): the same JSON as xl" || { bad "list -l differs"; differ "$h" "$x"; }
h=$(hx list -v 2>&1 | awk '{print $1,$2,$7,$8,$9}'); x=$(xl list -v 2>&1 | awk '{print $1,$2,$7,$8,$9}')
[ "$h" = "$x" ] && ok "list -v: names, ids, UUIDs, reason codes, labels as xl" || { bad "list -v differs"; differ "$h" "$x"; }
h=$(hx config xsc 2>&1); x=$(xl list -l xsc 2>/dev/null | jq '.[0].config')
[ "$(echo "$h" | jq -S . 2>&1)" = "$(echo "$x" | jq -S . 2>&1)" ] && [ "$(echo "$h" | jq -r '.c_info.xsdata["hx/id"]')" = "$cid" ] \
    && ok "config xsc: xl's config of the container's domain, with its hx/id" || { bad "config xsc"; differ "$h" "$x"; }
[ "$(hx config xs | jq -r .c_info.name)" = xs ] && ok "config xs" || bad "config xs"

# --- exit codes and messages on bad input, as xl's
for pair in "list -l nosuch|list -l nosuch" "config nosuch|list -l nosuch" "domain save nosuch $w/n.save|save nosuch $w/n.save" \
    "domain restore $w/missing.save|restore $w/missing.save" "domain restore $w/xs.cfg|restore $w/xs.cfg"; do
    # shellcheck disable=SC2086
    hx ${pair%%|*} >/dev/null 2>&1; h=$?
    # shellcheck disable=SC2086
    xl ${pair#*|} >/dev/null 2>&1; x=$?
    [ "$h" = "$x" ] && ok "${pair%%|*}: exit $h like xl ${pair#*|}" || bad "${pair%%|*}: hx exit $h, xl exit $x"
done
msg=$(hx domain restore "$w/xs.cfg" 2>&1)
echo "$msg" | grep -q "not an xl save file" && ok "a config given as a save file: '$msg'" || bad "bad magic message: $msg"
msg=$(hx domain save xsc "$w/xsc.save" 2>&1); rc=$?
[ "$rc" = 5 ] && echo "$msg" | grep -q "hx container" && [ ! -e "$w/xsc.save" ] && timeout 20 hx exec xsc true \
    && ok "domain save xsc: refused (exit 5), no file, xsc still runs" || bad "domain save xsc: exit $rc: $msg"

step "list, config, bad input done"
# --- save and restore: the counter goes on where it was, without a second boot
s0=$(date +%s.%N)
out=$(hx domain save xs "$w/hx1.save" 2>&1); rc=$?
n0=$(last_count)
[ "$rc" = 0 ] && domain_gone xs 30 && [ "$(head -c 27 "$w/hx1.save")" = "Xen saved domain, xl format" ] \
    && ok "domain save xs: exit 0, xs gone, an xl save file of $(du -m "$w/hx1.save" | cut -f1) MiB ($(elapsed "$s0") s)" || bad "domain save xs: exit $rc: $out"
s0=$(date +%s.%N)
out=$(hx domain restore "$w/hx1.save" 2>&1); rc=$?
[ "$rc" = 0 ] && count_above "$n0" 60 && [ "$(boots)" = 1 ] && grep -aq "XS-COUNT $((n0 + 1)) $((n0 + 1))" "$log" \
    && ok "domain restore: the count went on ($n0 -> $(last_count)), file and all, no second boot ($(elapsed "$s0") s)" || { bad "domain restore: exit $rc, count $n0 -> $(last_count), $(boots) boots: $out"; tail -5 "$log" | show; }

n0=$(last_count)
s0=$(date +%s.%N)
out=$(xl save xs "$w/xl.save" 2>&1) && domain_gone xs 30 || bad "xl save xs: $out"
xl_save=$(elapsed "$s0"); s0=$(date +%s.%N)
out=$(hx domain restore "$w/xl.save" 2>&1); rc=$?
[ "$rc" = 0 ] && count_above "$((n0 + 1))" 60 && [ "$(boots)" = 1 ] && ok "domain restore of xl's save file: the count went on ($n0 -> $(last_count)) ($(elapsed "$s0") s; xl save took $xl_save s)" || { bad "restore of xl's file: exit $rc: $out"; tail -5 "$log" | show; }

id=$(xl domid xs)
out=$(hx domain save -c xs "$w/hx2.save" 2>&1); rc=$?
c0=$(last_count)
[ "$rc" = 0 ] && [ "$(xl domid xs)" = "$id" ] && count_above "$((c0 + 1))" 30 && ok "domain save -c: xs runs on (domain $id, counting)" || bad "save -c: exit $rc: $out"
xl destroy xs; domain_gone xs 30
lines=$(wc -l < "$log")
s0=$(date +%s.%N)
out=$(xl restore "$w/hx2.save" 2>&1); rc=$?
xl_restore=$(elapsed "$s0")
sleep 3
new=$(tail -n +"$((lines + 1))" "$log" | grep -a -o 'XS-COUNT [0-9]*' | awk '{print $2}')
first=$(echo "$new" | head -1)
[ "$rc" = 0 ] && [ -n "$first" ] && [ "$first" -le "$((c0 + 1))" ] && ! tail -n +"$((lines + 1))" "$log" | grep -aq XS-BOOT \
    && ok "xl restore of hx's save file: the count went on from the checkpoint ($first after $c0) (xl restore took $xl_restore s)" || { bad "xl restore of hx's file: exit $rc, first count '$first' (checkpoint near $c0): $out"; tail -5 "$log" | show; }

step "saves and restores done"
# --- a save killed half-way: no file, and the guard resumes the suspended domain
n0=$(last_count)
hx domain save xs "$w/killed.save" >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 300; i++)); do st=$(xl list xs 2>/dev/null | awk 'NR==2{print $5}'); [ "${st:3:1}" = s ] && break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
left=$(ls -a "$w" | grep -c -e killed -e hx-new -e hx-partial)
[ "${st:3:1}" = s ] && count_above "$((n0 + 2))" 60 && [ "$left" = 0 ] \
    && ok "a save SIGKILLed while xs was suspended ($st): xs resumed and counts on ($n0 -> $(last_count)), no file left" || { bad "killed save: state at the kill '$st', count $n0 -> $(last_count), $left files left"; xl list | show; }
step "killed save done"

# --- a restore killed half-way leaves no domain behind (the guard destroys it)
xl destroy xs >/dev/null 2>&1; domain_gone xs 30
snapshot "$w/before"
killed=
for attempt in 1 2; do
    hx domain restore "$w/hx2.save" >/dev/null 2>&1 &
    pid=$!
    for ((i = 0; i < 300; i++)); do
        id=$(xl domid xs 2>/dev/null) && break
        sleep 0.1
    done
    mark=$(xenstore-read "/local/domain/$id/hx/restoring" 2>/dev/null)
    kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    [ -n "$mark" ] && { killed=1; break; }
    echo "    note: attempt $attempt: the restore finished before the kill; again"
    hx destroy xs >/dev/null 2>&1; domain_gone xs 30
done
domain_gone xs 30; sleep 1
snapshot "$w/after"
[ -n "$killed" ] && ! xl domid xs >/dev/null 2>&1 && diff -q "$w/before" "$w/after" >/dev/null \
    && ok "a SIGKILLed domain restore left nothing (domains, loop devices, xenstore, containers as before)" || { bad "killed restore: killed mid-restore '$killed', left:"; diff "$w/before" "$w/after" | show; }
# ... and one whose guard was killed with it: the next restore destroys the abandoned domain
hx domain restore "$w/hx2.save" >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 300; i++)); do id=$(xl domid xs 2>/dev/null) && break; sleep 0.1; done
gpid=$(pgrep -f "__xl-guard restore")
kill -9 "$pid" $gpid 2>/dev/null; wait "$pid" 2>/dev/null
sleep 2
abandoned=$(xl domid xs 2>/dev/null)
lines=$(wc -l < "$log")
out=$(hx domain restore "$w/hx2.save" 2>&1); rc=$?
counts_again() { local i; for ((i = 0; i < 60; i++)); do tail -n +"$((lines + 1))" "$log" | grep -aq XS-COUNT && return 0; sleep 1; done; return 1; }
[ -n "$gpid" ] && [ -n "$abandoned" ] && [ "$rc" = 0 ] && echo "$out" | grep -q "destroying domain $abandoned: a restore that did not finish" \
    && ! xl list "$abandoned" >/dev/null 2>&1 && counts_again \
    && ok "a restore killed with its guard: the next restore destroyed domain $abandoned and restored xs" || { bad "guard killed too: guard '$gpid', abandoned '$abandoned', exit $rc: $out"; xl list | show; }

step "killed restore done"
hx rm -f xsc >/dev/null 2>&1
xl destroy xs >/dev/null 2>&1
rm -f "$w"/*.save
echo "xl-save took $(( $(date +%s) - t0 )) s"
exit $fail
