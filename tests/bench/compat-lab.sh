#!/bin/bash
# Redis and MariaDB through a published port in the Xen lab: hx PVH and PV against the same
# servers run natively in dom0, in one lab boot (docs/benchmarks.md; the QEMU counterpart is
# tests/bench/compat.sh). Builds the compat images (tests/images/compat.sh) and runs
# tests/xen-lab/compat-bench.sh in dom0; prints its tables.
# Usage: tests/bench/compat-lab.sh [tests/xen-lab/run options]...
#   e.g. --script tests/xen-lab/checks/compat.sh to run the compat check first in the same boot.
# Env: REQUESTS (20000), QUERIES (2000), ROUNDS (1), TYPES ("pvh pv") for dom0's script;
# HX_LAB_HX, HX_LAB_LIB, HX_LAB_RESULTS (default /tmp/hx-compat-lab) as for tests/xen-lab/run.
# Root; ~15 min under TCG (about 10 of them the benchmark).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
for v in REQUESTS QUERIES ROUNDS; do
    [[ "${!v:-1}" =~ ^[0-9]+$ ]] || { echo "compat-lab: $v must be a number" >&2; exit 2; }
done
[[ "${TYPES:-pvh pv}" =~ ^(pvh|pv)( (pvh|pv))*$ ]] || { echo "compat-lab: TYPES: pvh and/or pv" >&2; exit 2; }
work="$(mktemp -d /tmp/hx-compat-lab.XXXXXX)"
trap 'rm -rf "$work"' EXIT
results="${HX_LAB_RESULTS:-/tmp/hx-compat-lab}"

"$repo/tests/images/compat.sh" redis "$work/redis" >/dev/null
"$repo/tests/images/compat.sh" mariadb "$work/mariadb" >/dev/null
# dom0's environment is its own: the settings travel in a script of their own.
cat > "$work/compat-bench" <<EOF
#!/bin/bash
export REQUESTS=${REQUESTS:-20000} QUERIES=${QUERIES:-2000} ROUNDS=${ROUNDS:-1} TYPES="${TYPES:-pvh pv}"
exec /lab/bin/compat-bench.sh
EOF
set +e
HX_LAB_RESULTS="$results" "$repo/tests/xen-lab/run" --no-suite --quiet \
    --image "redis=$work/redis" --image "mariadb=$work/mariadb" "$@" \
    --file "$repo/tests/xen-lab/compat-bench.sh:/lab/bin/compat-bench.sh" --script "$work/compat-bench" \
    > "$work/lab.out" 2>&1
rc=$?
set -e
tail -n 30 "$work/lab.out"
echo
echo "=== compat-bench ($(date -u +%Y-%m-%d), $results/script-output.txt)"
sed -n '/^=== [0-9]*-compat-bench$/,$p' "$results/script-output.txt"
exit "$rc"
