#!/bin/bash
# cri.sh for PVH only (tests/run-all.sh runs the PV half in the other lab boot, which
# evens the two boots out). The lab has cri.sh at /lab/cri.sh (run's --file).
CRI_TYPES=pvh exec bash /lab/cri.sh
