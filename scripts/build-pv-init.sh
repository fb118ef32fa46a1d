#!/bin/bash
# Builds pv-init as a static binary (it runs as PID 1 in a guest with no libc) and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
# Small: its whole file lives in every guest's RAM (the initramfs is a tmpfs, and a running
# binary's pages stay there). Size over speed (its work is syscalls), one LTO unit, and abort on
# panic: the panic hook powers the guest off either way. 2.64 MB -> 1.92 MB, 0.7 MiB less
# guest memory in use (docs/benchmarks.md).
CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_DEBUG=false \
    RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols -C debuginfo=0" cargo build -q --release -p pv-init --bin pv-init \
    --target x86_64-unknown-linux-gnu --target-dir target/pv-init
bin="$PWD/target/pv-init/x86_64-unknown-linux-gnu/release/pv-init"
if readelf -d "$bin" | grep -q NEEDED; then
    echo "build-pv-init: $bin is dynamically linked" >&2
    exit 1
fi
echo "$bin"
