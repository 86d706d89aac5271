#!/bin/bash
# attnc side by side with ONNX Runtime, torch and OpenBLAS on this CPU, in one command:
# installs the peers (idempotently), builds attnc Release (configured when missing, brought up to
# date otherwise), builds and runs the FMA peak probe, runs every case interleaved on 2 threads
# and writes bench/results/cpu-YYYY-MM-DD.md and .json. See bench/README.md.
#
# Usage: bench/cpu/run.sh [--quick] [bench.py options...]
#   --quick          fewer shapes and rounds (a few minutes)
# Environment:
#   ATTNC            an attnc binary to use instead of build/release/tools/attnc/attnc
#   ATTNC_BUILD_DIR  the Release build directory (default build/release, the `release` preset)
#   BENCH_NO_INSTALL set to 1 to skip apt-get and npm (everything already installed)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3 # Debian's python3, the one with python3-torch
WORK="$HERE/work"   # generated: binaries, inputs, ONNX models, weights (git-ignored)
mkdir -p "$WORK"

say() { printf '== %s\n' "$*" >&2; }

# (a) peers and tools
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
  # package: the check that it is there (node and npm may come from outside Debian)
  need=()
  have() { command -v "$1" >/dev/null 2>&1; }
  have node || need+=(nodejs)
  have npm || need+=(npm)
  have gcc || need+=(gcc)
  have pkg-config || need+=(pkg-config)
  have cmake || need+=(cmake)
  have ninja || need+=(ninja-build)
  "$PY" -c 'import torch' 2>/dev/null || need+=(python3-torch)
  "$PY" -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
  "$PY" -c 'import onnx' 2>/dev/null || need+=(python3-onnx)
  pkg-config --exists openblas 2>/dev/null || need+=(libopenblas-dev)
  if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install ${need[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
  fi
  if ! (cd "$HERE" && node -e "require('onnxruntime-node')" 2>/dev/null); then
    say "npm install (onnxruntime-node, pinned in package.json)"
    # The package's install script would fetch a CUDA add-on from an unreachable host; the CPU
    # library ships inside the package itself.
    (cd "$HERE" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund)
  fi
fi

# (b) attnc, Release
if [ -n "${ATTNC:-}" ]; then
  ATTNC_BIN=$ATTNC
else
  BUILD=${ATTNC_BUILD_DIR:-$ROOT/build/release}
  ATTNC_BIN=$BUILD/tools/attnc/attnc
  if [ ! -f "$BUILD/build.ninja" ]; then
    say "configuring attnc (Release) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  say "building attnc (Release) in $BUILD"
  if ! cmake --build "$BUILD" -j2 --target attnc >"$WORK/build.log" 2>&1; then
    [ -x "$ATTNC_BIN" ] || { cat "$WORK/build.log" >&2; exit 1; }
    say "the build failed (see $WORK/build.log); using the attnc binary already there"
  fi
fi

# (c) the small C programs: FMA peak probe and the OpenBLAS peer
build_c() { # SOURCE OUTPUT EXTRA_FLAGS...
  local src=$1 out=$2
  shift 2
  if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
    gcc -O2 -std=gnu11 -pthread "$src" -o "$out" "$@"
  fi
}
build_c "$HERE/peak.c" "$WORK/peak"
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
build_c "$HERE/sgemm_openblas.c" "$WORK/sgemm_openblas" $(pkg-config --cflags --libs openblas)

# (d, e) every case, interleaved, and the report; the peak is measured inside, first.
exec "$PY" "$HERE/bench.py" --attnc "$ATTNC_BIN" --peak "$WORK/peak" --sgemm "$WORK/sgemm_openblas" \
  --work "$WORK" --results "$ROOT/bench/results" "$@"
