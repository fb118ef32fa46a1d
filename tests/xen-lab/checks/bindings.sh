#!/bin/bash
# xen-bindings' own dom0 tests (xen-bindings/tests/dom0.rs, `--ignored` elsewhere) against the
# lab's real libxl and xenstored: tests/run-all.sh builds the test binary and passes it with
# `--file BIN:/lab/bin/xen-bindings-dom0`.
set -u
bin=/lab/bin/xen-bindings-dom0
[ -x "$bin" ] || { echo "FAIL $bin missing"; exit 1; }
HX_XEN_KERNEL=/usr/local/lib/hx/vmlinux "$bin" --ignored --test-threads=1 2>&1
rc=$?
# A failed test must not leave a domain behind for the checks after this one.
xl list | awk 'NR>1 && $1 ~ /^hx-test-/ {print $1}' | xargs -r -n1 xl destroy
[ "$rc" = 0 ] && echo "PASS xen-bindings dom0 tests" || echo "FAIL xen-bindings dom0 tests (exit $rc)"
exit $rc
