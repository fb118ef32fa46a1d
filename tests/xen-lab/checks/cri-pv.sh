#!/bin/bash
# cri.sh for PV only (tests/run-all.sh runs the PVH half in the other lab boot, which
# evens the two boots out). The lab has cri.sh at /lab/cri.sh (run's --file).
CRI_TYPES=pv exec bash /lab/cri.sh
