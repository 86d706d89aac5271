#!/usr/bin/env bash
# Deployment benchmark (bench/deploy/bench.py): libattnrt.a's size and a standalone GPT-2's time
# to its first kernel, beside attnc run. Needs a release build:
#   cmake --preset release && cmake --build --preset release && bench/deploy/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD:-$root/build/release}"
work="${WORK:-$root/bench/deploy/work}"
exec /usr/bin/python3 "$root/bench/deploy/bench.py" --attnc "$build/tools/attnc/attnc" \
  --runtime "$build/runtime/api/libattnrt.a" --work "$work" "$@"
