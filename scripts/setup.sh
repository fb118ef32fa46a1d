#!/bin/bash
# Installs what hx needs on a Debian 12 machine, builds hx, pv-init and the hyper kernel, and
# installs them: /usr/local/bin/{hx,hx-runtime}, /usr/local/lib/hx/{bzImage,pv-init}.
# Idempotent: a second run rebuilds only what changed (cargo and the kernel cache).
#   --with-tests  also builds every test (tests/run-all.sh): one build whose features are the
#                 test build's, so `cargo test` compiles nothing twice (the tests' dev-dependencies
#                 turn on features of shared crates, serde's and hyper's among them).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${HX_PREFIX:-/usr/local}"
log() { echo "setup: $*" >&2; }
with_tests=0
case "${1:-}" in
    --with-tests) with_tests=1;;
    "") ;;
    *) echo "setup: unknown option $1 (usage: setup.sh [--with-tests])" >&2; exit 2;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (hx manages VMs, loop devices and /var/lib/hx)" >&2
    exit 1
fi

PACKAGES=(
    # build (libseccomp: seccomp profiles are compiled in dom0, toolstack/engine/src/seccomp.rs)
    gcc make pkg-config libssl-dev zlib1g-dev libclang-dev clang libxen-dev libseccomp-dev
    # hyper kernel
    linux-source-6.1 flex bison bc libelf-dev cpio xz-utils patch
    # images and guests
    erofs-utils e2fsprogs qemu-system-x86 busybox-static
    # tests: registry, image building, networking
    docker-registry skopeo mmdebstrap apache2-utils openssl python3 jq curl iproute2 nftables
    # tests: the compat suite's clients (toolstack/tests/compat.rs, tests/bench/compat.sh)
    redis-tools mariadb-client postgresql-client
    # tests: docker's CLI driving hx-runtime (toolstack/tests/docker.rs starts its own dockerd)
    docker.io docker-compose
    # tests: podman driving hx-runtime (toolstack/tests/podman.rs; CNI networking, dnsname for DNS)
    podman conmon containernetworking-plugins golang-github-containernetworking-plugin-dnsname
    # tests: ctr driving the hx shim (toolstack/tests/containerd.rs starts its own containerd)
    containerd
    # tests: the CRI client's protobuf code is generated at build time (k8s-cri: tonic-prost-build)
    protobuf-compiler
    # benchmarks
    wrk
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q
    # No service may start during the install: docker.io's dockerd would make docker0 and
    # iptables rules on the machine's own network (the tests start theirs in a namespace).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [ -n "$policy" ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || exit "$rc"
fi
# QEMU 10 from bookworm-backports (with a private sources list, tests/xen-lab/apt.sh: the
# machine's own is left as it is): bookworm's 7.2 has no copy-on-write RAM file (`rom=off`,
# QEMU 8.2), which warm start maps its templates with, nor the `mapped-ram` checkpoint format
# (9.0); the Xen lab needs 10 too (docs/xen-lab.md).
qemu_version="$(qemu-system-x86_64 --version 2>/dev/null | awk 'NR==1{print $4}')"
if [ -z "$qemu_version" ] || dpkg --compare-versions "$qemu_version" lt 10; then
    log "installing qemu-system-x86 from bookworm-backports (have: ${qemu_version:-none})"
    DEBIAN_FRONTEND=noninteractive "$repo/tests/xen-lab/apt.sh" install -y -q -t bookworm-backports \
        --no-install-recommends qemu-system-x86 >/dev/null
fi
# Debian's docker-registry package starts a system registry on :5000; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
# Nor docker's system daemon at boot (its bridge and rules on the machine's interfaces).
systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true

cd "$repo"
if [ "$with_tests" = 1 ]; then
    log "building hx, hx-runtime, containerd-shim-hx-v2 and the tests"
    cargo build --release --workspace --all-targets --locked
else
    log "building hx, hx-runtime and containerd-shim-hx-v2"
    cargo build --release -p hx-toolstack -p hx-oci-runtime -p hx-shim
fi
log "building pv-init (static)"
pv_init="$(scripts/build-pv-init.sh)"
log "building the hyper kernel (cached after the first build)"
kernel="$(kernel/build.sh)"

install -D -m 0755 target/release/hx "$prefix/bin/hx"
install -D -m 0755 target/release/hx-runtime "$prefix/bin/hx-runtime"
install -D -m 0755 target/release/containerd-shim-hx-v2 "$prefix/bin/containerd-shim-hx-v2"
install -D -m 0755 "$pv_init" "$prefix/lib/hx/pv-init"
install -D -m 0644 "$kernel" "$prefix/lib/hx/bzImage"
install -D -m 0644 "$(dirname "$kernel")/vmlinux" "$prefix/lib/hx/vmlinux"
mkdir -p /etc/bash_completion.d
"$prefix/bin/hx" completion bash > /etc/bash_completion.d/hx
log "installed $prefix/bin/{hx,hx-runtime,containerd-shim-hx-v2} and $prefix/lib/hx/{bzImage,vmlinux,pv-init}"
