#!/usr/bin/env bash
# GPU check of issue 13 (docs/performance.md): one table, each row printed as soon as it is measured.
#   bash scripts/bench/gpu_check.sh            # at most 5 minutes on one H100/H200
#   bash scripts/bench/gpu_check.sh --smoke    # tiny shapes, any device (about a minute on CPU)
#   bash scripts/bench/gpu_check.sh --out gpu_check.md   # also append the table to a file
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout 300 python scripts/bench/gpu_check.py "$@"
