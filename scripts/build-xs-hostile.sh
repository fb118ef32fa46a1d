#!/bin/bash
# Builds xs-hostile (xenstore-wire's example: a hostile guest workload for the Xen lab's
# checks/hostile.sh) as a static binary, so it runs in an image with nothing else, and prints
# its path.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols -C debuginfo=0" cargo build -q --release -p xenstore-wire \
    --example xs-hostile --target x86_64-unknown-linux-gnu --target-dir target/xs-hostile
bin="$PWD/target/xs-hostile/x86_64-unknown-linux-gnu/release/examples/xs-hostile"
if readelf -d "$bin" | grep -q NEEDED; then
    echo "build-xs-hostile: $bin is dynamically linked" >&2
    exit 1
fi
echo "$bin"
