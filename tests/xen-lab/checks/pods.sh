#!/bin/bash
# Pods on Xen (docs/pods.md, "Xen"), PVH and PV: one domain per pod, each member's disks
# hot-plugged into it as blkback vbds (xvdaa + 2 x slot, read-only image, and the writable layer)
# by its keeper, its workload started over the pod's exec channel (the vchan). Per type: a pod
# with a published port, a busybox httpd member reached from a second member over localhost and
# from dom0 through the pod's port, members' own files, a member's exit code, hx exec into a
# member, hx rm -f of a member (the pod runs on, the member's vbds gone from xenstore), and
# hx pod rm -f (no domain, vbd, loop device, QEMU or record left); a writable host directory live
# in members through the pod's members export (PVH; the PV pod is made without QEMU in dom0 and
# refuses it), a read-only host file and directory (live through the read-only export, PVH:
# kubelet's ConfigMap update seen; copies in the PV pod), named and anonymous volumes
# (more vbds of the member's slot, also after a killed keeper), a member's stdin (-i), a
# member's own memory limit (-m, OOM-killed alone) and hx update of a running member's limits.
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
t0=$(date +%s)
dm=/usr/libexec/xen-qemu-system-i386
dms() { pgrep -f "^$dm" | wc -l; }
vbds() { xenstore-list "/local/domain/0/backend/vbd/$1" 2>/dev/null | sort -n | tr '\n' ' '; }
loops0=$(losetup -a | sort)
# Earlier checks in the same lab may leave containers of their own: only this script's count.
records0=$(hx ps -a -q 2>&1 | sort)
for type in pvh pv; do
    p="pod$type"
    port=$([ "$type" = pvh ] && echo 18080 || echo 18081)
    ts=$(date +%s)
    # The PV pod is made without QEMU in dom0: no members export, so no 9pfs backend to pay for.
    [ "$type" = pv ] && mv "$dm" "$dm.away"
    out=$(timeout 300 hx pod create --name "$p" --type "$type" -p "$port:8080" 2>&1); rc=$?
    [ "$type" = pv ] && mv "$dm.away" "$dm"
    [ "$rc:$out" = "0:$p" ] && ok "$type: pod create ($(( $(date +%s) - ts )) s)" || { bad "$type: pod create: exit $rc: $out"; continue; }
    [ "$(dms)" = "$([ "$type" = pvh ] && echo 1 || echo 0)" ] && ok "$type: $(dms) QEMU in dom0 for the pod's members export" \
        || bad "$type: $(dms) QEMU processes"
    domid=$(xl domid "$p-infra" 2>/dev/null)
    [ -n "$domid" ] && ok "$type: the pod is domain $domid" || bad "$type: no domain $p-infra"
    own=$(vbds "$domid")
    # On the store's filesystem (the scratch disk's ext4): the export's security model is the
    # one that filesystem takes (mapped-xattr), which dom0's ramfs /tmp cannot hold.
    rw=/lab/disk/work/pod-rw
    rm -rf "$rw"; mkdir -p "$rw"; echo from-dom0 > "$rw/in"
    # kubelet's ConfigMap layout: the data in a versioned directory, `..data` and key links.
    rm -rf /tmp/pod-dir; mkdir -p /tmp/pod-dir/..v1; echo "dir-from-dom0" > /tmp/pod-dir/..v1/key
    ln -s ..v1 /tmp/pod-dir/..data; ln -s ..data/key /tmp/pod-dir/key
    shared=()
    if [ "$type" = pvh ]; then
        shared=(-v "$rw:/shared" -v /tmp/pod-dir:/cfg:ro)
        # The ConfigMap's directory a shared mount, as kubelet's volumes are on a systemd host:
        # a member's bind must not join its peer group (checked in QEMU's mounts below).
        mount --bind /tmp/pod-dir /tmp/pod-dir && mount --make-shared /tmp/pod-dir \
            || bad "$type: making /tmp/pod-dir a shared mount"
    fi
    ts=$(date +%s)
    timeout 120 hx run -d --pod "$p" --name "srv$type" "${shared[@]}" busybox sh -c \
        'mkdir -p /www && echo hello-from-srv > /www/index.html && echo mine > /srv-file && exec httpd -f -p 8080 -h /www' >/dev/null \
        && ok "$type: run -d --pod: httpd member ($(( $(date +%s) - ts )) s)" || bad "$type: run -d --pod httpd"
    got=""
    for _ in $(seq 30); do
        got=$(timeout 60 hx run --rm --pod "$p" busybox wget -qO- http://localhost:8080/ 2>&1) && break
        sleep 1
    done
    [ "$got" = hello-from-srv ] && ok "$type: a second member reaches the first over localhost" || bad "$type: wget localhost: '$got'"
    # Each member's own limits in the pod's domain (a cgroup each): -m is the member's memory
    # limit, which the OOM killer enforces on it alone (busybox's tail buffers all it reads),
    # shown to it at /sys/fs/cgroup; hx update changes a running member's.
    out=$(timeout 240 hx run --rm --pod "$p" -m 32m busybox \
        sh -c 'cat /sys/fs/cgroup/memory.max; head -c 64m /dev/zero | tail >/dev/null' 2>/dev/null); rc=$?
    [ "$rc:$out" = "137:$((32 << 20))" ] && ok "$type: a member's -m is its own limit (OOM-killed at 32 MiB: exit 137)" \
        || bad "$type: member with -m 32m: exit $rc: '$out'"
    out=$(timeout 120 hx update -m 48m --cpu-shares 512 "srv$type" 2>&1) \
        && out=$(timeout 60 hx exec "srv$type" cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.weight 2>&1)
    [ "$out" = "$(printf '%s\n20' $((48 << 20)))" ] && ok "$type: hx update of a running member: its cgroup's memory.max and cpu.weight" \
        || bad "$type: update of srv$type: '$out'"
    # A member given CAP_SYS_ADMIN mounts a tmpfs without nodev and makes a node of the pod
    # domain's first disk there; its device cgroup refuses to open it (docs/pods.md).
    out=$(timeout 120 hx run --rm --pod "$p" --cap-add SYS_ADMIN busybox sh -c \
        'mkdir /tmp/m && mount -t tmpfs none /tmp/m && d=$(ls /sys/block | grep -E "^(sd|vd|xvd)" | head -n 1) \
         && m=$(cat /sys/block/$d/dev) && mknod /tmp/m/disk b ${m%:*} ${m#*:} && echo made; \
         head -c 1 /tmp/m/disk 2>&1 >/dev/null | grep -o "Operation not permitted"' 2>&1)
    [ "$out" = "$(printf 'made\nOperation not permitted')" ] \
        && ok "$type: a CAP_SYS_ADMIN member cannot open the pod domain's disk it made a node of (EPERM)" \
        || bad "$type: CAP_SYS_ADMIN member's device node: '$out'"
    if [ "$type" = pvh ]; then
        # A writable host directory is live in members, both ways: bound into the pod's
        # members export (9pfs from boot) in the monitor's mount namespace, never dom0's.
        out=$(timeout 60 hx run --rm --pod "$p" -v "$rw:/data" busybox \
            sh -c 'cat /data/in; echo from-member > /data/out && echo wrote' 2>&1)
        [ "$out" = "$(printf 'from-dom0\nwrote')" ] && [ "$(cat "$rw/out" 2>/dev/null)" = from-member ] \
            && ok "$type: a writable host directory in a member, live both ways" \
            || bad "$type: member host directory: '$out', dom0 sees '$(cat "$rw/out" 2>&1)'"
        echo late > "$rw/late"
        out=$(timeout 60 hx exec "srv$type" sh -c 'cat /shared/late /shared/out' 2>&1)
        [ "$out" = "$(printf 'late\nfrom-member')" ] && ok "$type: a running member sees dom0's and another member's writes" \
            || bad "$type: srv's /shared: '$out'"
        grep -q pod-rw /proc/self/mountinfo && bad "$type: a member's bind in dom0's mount namespace" \
            || ok "$type: no member bind in dom0's mount namespace"
    else
        # A pod without a members export: a writable host directory refused in one line.
        out=$(timeout 60 hx run --rm --pod "$p" -v /tmp:/data busybox true 2>&1); rc=$?
        [ "$rc" = 125 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"no members export"* ]] \
            && ok "$type: no members export: a member's writable host directory refused in one line, exit 125" \
            || bad "$type: member host directory: exit $rc: $out"
    fi
    # -i: a member's stdin to its end over the pod's exec channel.
    out=$(printf 'in1\nin2\n' | timeout 60 hx run -i --rm --pod "$p" busybox sh -c 'cat; exit 4' 2>&1); rc=$?
    [ "$rc:$out" = "4:$(printf 'in1\nin2')" ] && ok "$type: run -i --pod: the member's stdin, exit 4" \
        || bad "$type: run -i --pod: exit $rc, '$out'"
    # A read-only host file and directory (PVH: live through the read-only members export;
    # PV, no export: copies made at the member's start), :ro enforced, the links kept.
    echo "file-from-dom0" > /tmp/pod-file
    out=$(timeout 60 hx run --rm --pod "$p" -v /tmp/pod-file:/etc/from-host:ro busybox \
        sh -c 'cat /etc/from-host; echo x 2>/dev/null > /etc/from-host && echo writable || echo ro' 2>&1)
    [ "$out" = "$(printf 'file-from-dom0\nro')" ] && ok "$type: a read-only host file in a member" \
        || bad "$type: member host file: '$out'"
    out=$(timeout 60 hx run --rm --pod "$p" -v /tmp/pod-dir:/cfg:ro busybox \
        sh -c 'cat /cfg/key; readlink /cfg/key; touch /cfg/new /cfg/..v1/new 2>/dev/null && echo writable || echo ro' 2>&1)
    [ "$out" = "$(printf 'dir-from-dom0\n..data/key\nro')" ] && ok "$type: a read-only host directory in a member (links kept)" \
        || bad "$type: member host directory: '$out'"
    if [ "$type" = pvh ]; then
        # kubelet's update: a new version directory, `..data` swapped by a rename. The running
        # member sees it.
        mkdir /tmp/pod-dir/..v2; echo "dir-updated" > /tmp/pod-dir/..v2/key
        ln -s ..v2 /tmp/pod-dir/..data_tmp && mv -T /tmp/pod-dir/..data_tmp /tmp/pod-dir/..data
        out=$(timeout 60 hx exec "srv$type" sh -c 'cat /cfg/key; touch /cfg/..v2/x 2>/dev/null && echo writable || echo ro' 2>&1)
        [ "$out" = "$(printf 'dir-updated\nro')" ] && ok "$type: a running member sees dom0's update of a read-only directory" \
            || bad "$type: srv's /cfg after the update: '$out'"
        [ ! -e /tmp/pod-dir/..v2/x ] && ok "$type: nothing written through the read-only export" \
            || bad "$type: written: $(ls -la /tmp/pod-dir/..v2)"
        # As the pod's 9pfs QEMU sees it (it serves passthrough there): the export and srv's
        # bind in it read-only, the bind in no peer group of the host's shared mount (private),
        # so a mount dom0 makes under the source later does not show up there (writable).
        mkdir -p /tmp/pod-dir/late && mount -t tmpfs late /tmp/pod-dir/late
        q=$(pgrep -f "^$dm .*-xen-domid $domid( |$)" | head -n 1)
        seen=$(awk '$5 ~ /\/members-ro(\/|$)/ { n++; if ($6 !~ /^ro(,|$)/) w++ }
                    $5 ~ /\/members-ro\/./ && $0 ~ / (shared|master):[0-9]/ { s++ }
                    $5 ~ /\/late$/ { l++ }
                    END { printf "%d %d %d %d", n, w, s, l }' "/proc/$q/mountinfo" 2>/dev/null)
        [ -n "$q" ] && [ "$seen" = "2 0 0 0" ] \
            && ok "$type: the read-only export and its bind are read-only and private in QEMU's mounts" \
            || bad "$type: QEMU '$q' sees members-ro mounts (count, writable, propagating, late): '$seen'"
        umount /tmp/pod-dir/late; umount /tmp/pod-dir
    fi
    # Volumes are more vbds of the member's slot (xvdaaa + 8 x slot...): a named volume's data
    # outlives the member that wrote it; :ro is read-only; an anonymous volume works too.
    hx volume create "podvol$type" >/dev/null 2>&1 || bad "$type: volume create podvol$type"
    out=$(timeout 60 hx run --rm --pod "$p" -v "podvol$type:/data" busybox \
        sh -c 'ls -A /data; echo kept > /data/f && echo wrote' 2>&1)
    [ "$out" = wrote ] && ok "$type: a named volume in a member (empty, written)" || bad "$type: member volume write: '$out'"
    out=$(timeout 60 hx run --rm --pod "$p" -v "podvol$type:/data:ro" -v /anon busybox \
        sh -c 'cat /data/f; touch /data/x 2>/dev/null && echo writable || echo ro; echo a > /anon/a && cat /anon/a' 2>&1)
    [ "$out" = "$(printf 'kept\nro\na')" ] && ok "$type: the next member reads it (:ro), and an anonymous volume" \
        || bad "$type: member volume read: '$out'"
    lim=$(for i in $(seq 9); do printf -- '-v lim%s:/l%s ' "$i" "$i"; done)
    # shellcheck disable=SC2086
    out=$(timeout 60 hx run --rm --pod "$p" $lim busybox true 2>&1); rc=$?
    [ "$rc" = 125 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [[ "$out" == *"at most 8"* ]] \
        && ! hx volume ls -q 2>/dev/null | grep -q '^lim' \
        && ok "$type: nine volumes in a member refused in one line, exit 125, none made" || bad "$type: nine volumes: exit $rc: $out"
    # run -d returns once the keeper runs; httpd answering means its disks are in. Slot 0:
    # xvdaa and xvdab, vbd numbers (1 << 28) | (26 << 8) and | (27 << 8).
    members=$(vbds "$domid")
    [ "$members" = "${own}268442112 268442368 " ] && ok "$type: the member's vbds xvdaa, xvdab on the pod's domain ($members)" \
        || bad "$type: vbds of domain $domid: '$members', its own '$own'"
    got=$(curl -sf --max-time 10 "http://127.0.0.1:$port/" 2>&1)
    [ "$got" = hello-from-srv ] && ok "$type: the pod's published port $port serves the member" || bad "$type: curl :$port: '$got'"
    got=$(timeout 60 hx exec "srv$type" cat /srv-file 2>&1); rc=$?
    [ "$rc:$got" = "0:mine" ] && ok "$type: exec into the member sees its own file" || bad "$type: exec cat /srv-file: exit $rc, '$got'"
    got=$(timeout 60 hx run --rm --pod "$p" busybox sh -c 'ls /srv-file /www 2>/dev/null; echo n=$?' 2>&1)
    [ "$got" = "n=1" ] && ok "$type: another member does not see it" || bad "$type: other member sees: '$got'"
    if [ "$type" = pvh ]; then
        # A member's start against a container of its own (a domain's boot): MEASURE only.
        s=$(date +%s%N); timeout 120 hx run --rm --pod "$p" busybox true; m=$(( ($(date +%s%N) - s) / 1000000 ))
        s=$(date +%s%N); timeout 300 hx run --rm --network none busybox true; c=$(( ($(date +%s%N) - s) / 1000000 ))
        echo "MEASURE pvh run-rm-true-ms member $m container $c"
    fi
    timeout 60 hx run --rm --pod "$p" busybox sh -c 'echo bye; exit 7' >/dev/null 2>&1; rc=$?
    [ "$rc" = 7 ] && ok "$type: a member's exit code (7)" || bad "$type: exit code $rc, expected 7"
    ts=$(date +%s)
    hx rm -f "srv$type" >/dev/null 2>&1 && ok "$type: rm -f of the member ($(( $(date +%s) - ts )) s)" || bad "$type: rm -f srv$type"
    if [ "$type" = pvh ]; then
        left=$(for m in $(pgrep -f __xen-monitor); do grep pod-rw "/proc/$m/mountinfo"; done 2>/dev/null)
        [ -z "$left" ] && ok "$type: the member's bind gone from the export" || bad "$type: binds left: $left"
    fi
    left=$(vbds "$domid")
    [ "$left" = "$own" ] && ok "$type: its vbds are gone from xenstore ($left)" || bad "$type: vbds after rm -f: '$left', pod's own '$own'"
    xl domid "$p-infra" >/dev/null 2>&1 && ok "$type: the pod's domain runs on" || bad "$type: the pod's domain is gone"
    got=$(timeout 60 hx run --rm --pod "$p" busybox echo still-here 2>&1)
    [ "$got" = still-here ] && ok "$type: the pod takes members again" || bad "$type: after rm -f: '$got'"
    # A keeper killed (SIGKILL): its member's vbds go with the member's cleanup. The --rm
    # member's keeper unplugs after `hx run` returned: its vbds must be gone first, or they
    # would pass for the next member's.
    for _ in $(seq 30); do [ "$(vbds "$domid")" = "$own" ] && break; sleep 1; done
    out=$(hx run -d --pod "$p" --name "doomed$type" -v "podvol$type:/data" busybox sleep 600 2>&1) || bad "$type: run -d doomed$type: $out"
    for _ in $(seq 60); do [ "$(vbds "$domid" | wc -w)" = $(( $(echo $own | wc -w) + 3 )) ] && break; sleep 1; done
    id=$(hx inspect -f '{{.Id}}' "doomed$type" 2>/dev/null)
    keeper=$(pgrep -f "__pod-member /var/lib/hx/containers/$id" | head -n 1)
    [ -n "$keeper" ] && [ "$(vbds "$domid")" != "$own" ] && kill -9 "$keeper" \
        && ok "$type: a member's keeper killed (its vbds: $(vbds "$domid"))" \
        || { bad "$type: no keeper ('$keeper') or vbds ('$(vbds "$domid")') for doomed$type"; hx ps -a | show; }
    hx rm -f "doomed$type" >/dev/null 2>&1 && [ "$(vbds "$domid")" = "$own" ] \
        && ok "$type: rm -f after its keeper was killed removes its vbds, the volume's too" || bad "$type: after the killed keeper: vbds '$(vbds "$domid")'"
    if [ "$type" = pvh ]; then
        # The volume the killed member held is whole for a container of its own.
        out=$(timeout 300 hx run --rm --network none -v "podvol$type:/data" busybox cat /data/f 2>&1)
        [ "$out" = kept ] && ok "$type: the volume, after the killed member, in a container's own domain" \
            || bad "$type: volume after the killed member: '$out'"
    fi
    out=$(hx volume rm "podvol$type" 2>&1) && ok "$type: volume rm once no member uses it" || bad "$type: volume rm: $out"
    ts=$(date +%s)
    hx pod rm -f "$p" >/dev/null 2>&1 && ok "$type: pod rm -f ($(( $(date +%s) - ts )) s)" || bad "$type: pod rm -f"
    domain_gone "$p-infra" 20 && ok "$type: no domain left" || bad "$type: domain $p-infra still listed"
    for _ in $(seq 10); do [ "$(dms)" = 0 ] && break; sleep 1; done
    [ "$(dms)" = 0 ] && ok "$type: no QEMU left" || bad "$type: $(dms) QEMU processes left"
    [ -z "$(vbds "$domid")" ] && ok "$type: no vbd left" || bad "$type: vbds left: $(vbds "$domid")"
    [ "$(hx ps -a -q 2>&1 | sort)" = "$records0" ] && ! hx pod ps -q 2>&1 | grep -qx "$p" \
        && ok "$type: no record left" \
        || bad "$type: records left: $(hx ps -a -q 2>&1 | tr '\n' ' ') pods: $(hx pod ps -q 2>&1 | tr '\n' ' ')"
done
[ "$(losetup -a | sort)" = "$loops0" ] && ok "no loop device left" || { bad "loop devices left"; losetup -a; }
echo "MEASURE pods-check-seconds $(( $(date +%s) - t0 ))"
exit $fail
