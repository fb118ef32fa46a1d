#!/bin/bash
# Builds pv-init as a static binary (it runs as PID 1 in a guest with no libc) and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols -C debuginfo=0" cargo build -q --release -p pv-init --bin pv-init \
    --target x86_64-unknown-linux-gnu --target-dir target/pv-init
bin="$PWD/target/pv-init/x86_64-unknown-linux-gnu/release/pv-init"
if readelf -d "$bin" | grep -q NEEDED; then
    echo "build-pv-init: $bin is dynamically linked" >&2
    exit 1
fi
echo "$bin"
