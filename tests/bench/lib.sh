# Shared by the QEMU benchmarks (exec.sh, run.sh, start.sh); sourced after `set -euo pipefail`.
# Sets repo, kernel, init and hx (env HX_KERNEL, HX_INIT, HX override them; the bench stops
# with a message if one is missing), busybox_dir (the test image), and how the benches time:
#   ms CMD...      milliseconds CMD takes, its input and output discarded
#   median N...    the median of the numbers
#   h ARGS...      hx on the bench's own store, $work/store ($work: set by the bench)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
kernel="${HX_KERNEL:-$repo/kernel/out/bzImage}"
init="${HX_INIT:-$repo/target/pv-init/pv-init}"
hx="${HX:-$repo/target/release/hx}"
busybox_dir="$repo/../shared/images/busybox-1.38.0-glibc"
for f in "$kernel" "$init" "$hx"; do
    [ -e "$f" ] || { echo "bench: missing $f (kernel/build.sh, scripts/build-pv-init.sh, cargo build --release -p hx-toolstack)" >&2; exit 1; }
done
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null </dev/null; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h() { "$hx" --root "$work/store" "$@"; }
