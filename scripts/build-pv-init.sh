#!/bin/bash
# Builds pv-init as a static binary (it runs as PID 1 in a guest with no libc) and prints its path
# (also copied to target/pv-init/pv-init).
set -euo pipefail
cd "$(dirname "$0")/.."
# Small: its whole file lives in every guest's RAM (the initramfs is a tmpfs, and a running
# binary's pages stay there). musl rather than static glibc (1.92 MB -> 1.12 MB: glibc's static
# locale, printf and dlopen machinery), size over speed (its work is syscalls), one LTO unit,
# and abort on panic: the panic hook powers the guest off either way (docs/benchmarks.md).
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    if ! rustup target add "$target" >&2; then
        echo "build-pv-init: cannot add the $target target: building with static glibc (1.9 MB, ~0.9 MiB more guest memory)" >&2
        target=x86_64-unknown-linux-gnu
    fi
fi
CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_DEBUG=false \
    RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols -C debuginfo=0" cargo build -q --release -p pv-init --bin pv-init \
    --target "$target" --target-dir target/pv-init
built="target/pv-init/$target/release/pv-init"
if readelf -d "$built" | grep -q NEEDED; then
    echo "build-pv-init: $built is dynamically linked" >&2
    exit 1
fi
# One path whichever libc it was built with (the tests and benchmarks default to it).
cp -f "$built" target/pv-init/pv-init.tmp && mv -f target/pv-init/pv-init.tmp target/pv-init/pv-init
echo "$PWD/target/pv-init/pv-init"
