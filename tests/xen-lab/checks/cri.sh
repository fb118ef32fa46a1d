#!/bin/bash
# Kubernetes' CRI on Xen, inside the lab's dom0: toolstack/tests/cri.rs's test binary (built by
# the cargo-test stage, passed with `--file BIN:/lab/bin/cri-test`; tests/run-all.sh) drives
# Debian's containerd with its CRI plugin, the `hx` runtime handler (containerd-shim-hx-v2 from
# /usr/local/bin) and the CNI bridge plugin (build-extras.sh), the way kubelet does: one pod as
# one domain, two containers in it (one serving on the pod's IP, the other reaching it over
# localhost; its hostPort through CNI's portmap), CRI logs, exit codes, ExecSync, streaming Exec (a terminal) and Attach, the pod's DNS config, a ConfigMap-like
# directory and an emptyDir live through the pod domain's members exports, and StopPodSandbox +
# RemovePodSandbox leaving nothing. Once as PVH, once as PV (HX_CONFIG's `[xen] type`, which
# containerd passes on to the shim). CRI_TYPES: one of them (cri-pvh.sh and cri-pv.sh, the halves
# tests/run-all.sh runs in its two lab boots).
set -u
. /lab/lib.sh
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
use_extras || exit 1
bin=/lab/bin/cri-test
[ -x "$bin" ] || { bad "$bin missing"; exit 1; }

# The test names Debian's paths; the extras live on the scratch disk.
x=/lab/disk/extras
for f in /usr/bin/containerd /usr/bin/ctr /usr/lib/cni; do
    [ -e "$f" ] || ln -s "$x$f" "$f"
done
# containerd copies the node's /etc/hosts into each sandbox; dom0's /init makes none.
[ -e /etc/hosts ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > /etc/hosts
w=/lab/disk/work/cri
mkdir -p "$w" /etc/hx
cat > /etc/hx/pv.toml <<'EOF'
[xen]
type = "pv"
EOF
# The test imports busybox under the name its QEMU runs use.
if hx tag busybox busybox:1.38.0 && hx save busybox:1.38.0 -o "$w/busybox.tar"; then
    ok "hx save busybox:1.38.0 for ctr images import"
else
    bad "hx save busybox"; exit 1
fi
snapshot /tmp/cri-before
guests() { xl list | awk 'NR>2 {print $1}'; }
# The test counts the pod's VMs as xl counts domains: one an earlier check left is named here,
# not blamed on the pod.
left=$(guests)
[ -z "$left" ] || bad "domains before the CRI test: $left"
for type in ${CRI_TYPES:-pvh pv}; do
    config=()
    [ "$type" = pv ] && config=(HX_CONFIG=/etc/hx/pv.toml)
    t0=$(now)
    env "${config[@]}" HX_TEST_XEN_TYPE="${type^^}" HX_TEST_BIN_DIR=/usr/local/bin HX_TEST_BUSYBOX_ARCHIVE="$w/busybox.tar" \
        HX_KERNEL=$HX_LIB/vmlinux HX_INIT=$HX_LIB/pv-init CI=true TMPDIR="$w" \
        "$bin" --exact cri_pod_with_two_containers --nocapture > "$w/$type.log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then
        ok "$type: CRI pod with two containers ($(elapsed "$t0") s)"
        # (RunPodSandbox's line follows libtest's "test NAME ... " on the same line.)
        grep -oE '(^(CreateContainer|Streaming|StopPodSandbox|CRI pod test)|RunPodSandbox: ).*' "$w/$type.log" | show 10
    else
        bad "$type: CRI pod test (exit $rc)"
        # The assertion first, with what it names (a wrong VM count: every domain and its
        # hx/id); the tail below is mostly the engine's logs the test dumps.
        grep -a -m1 -A16 'panicked at' "$w/$type.log" | show 18
        show 120 < "$w/$type.log"
        for f in /var/log/xen/console/guest-*.log; do [ -e "$f" ] && { echo "$f:"; tail -n 15 "$f"; } | show 16; done
    fi
    left=$(guests)
    if [ -n "$left" ]; then bad "$type: domains left: $left"; echo "$left" | xargs -n1 xl destroy 2>/dev/null; fi
done
hx rmi busybox:1.38.0 >/dev/null 2>&1
snapshot /tmp/cri-after
for f in /tmp/cri-before /tmp/cri-after; do grep -vx -e /libxl -e /vm -e /local/domain/0/device-model "$f" > "$f.x"; done
if diff /tmp/cri-before.x /tmp/cri-after.x > /tmp/cri-diff; then ok "no domain, loop device, xenstore node or hx record left"; else bad "leftovers"; show < /tmp/cri-diff; fi
exit $fail
