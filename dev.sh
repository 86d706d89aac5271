#!/usr/bin/env bash
# attnc's developer entry point.
#
#   ./dev.sh          set up, build (release), and run the bundled demo model end to end on the
#                     cpu backend and the reference evaluator, and time it
#   ./dev.sh test     set up, build (dev and asan presets), and run every test
#   ./dev.sh deps     only install the Debian packages the build needs
#
# Set-up installs missing Debian packages with apt-get (as root, or through sudo), and
# does nothing when they are all present.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build pkg-config gcc make libcmocka-dev libcjson-dev python3 python3-numpy
          llvm-22-tools llvm-22-dev libmlir-22-dev mlir-22-tools libprotobuf-c-dev protobuf-c-compiler libonnx-dev
          libedit-dev)

install_deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

build() {
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1"
}

demo() {
  build release
  local attnc=build/release/tools/attnc/attnc out=build/demo
  mkdir -p "$out"
  "$attnc" init-weights models/tiny.attn -o "$out/tiny.safetensors" --seed 42
  /usr/bin/python3 -c "import numpy as np; np.save('$out/ids.npy', (np.arange(32, dtype=np.int64) * 7 % 256).reshape(2, 16))"
  echo "== attnc run models/tiny.attn (2 x 16 tokens, compiled kernels on the cpu backend)"
  "$attnc" run models/tiny.attn -w "$out/tiny.safetensors" -i input_ids="$out/ids.npy" \
    -o logits="$out/logits_cpu.npy"
  echo "== the same on the reference evaluator"
  "$attnc" run models/tiny.attn -w "$out/tiny.safetensors" -i input_ids="$out/ids.npy" -b interp \
    -o logits="$out/logits_interp.npy"
  /usr/bin/python3 -c "import numpy as np; a, b = np.load('$out/logits_cpu.npy'), np.load('$out/logits_interp.npy'); print('cpu vs interp: relative L2 %.2e' % (np.linalg.norm(a - b) / np.linalg.norm(b)))"
  echo "== attnc bench models/tiny.attn"
  "$attnc" bench models/tiny.attn -w "$out/tiny.safetensors" -i input_ids="$out/ids.npy" --iters 20
}

run_tests() {
  local preset
  for preset in dev asan; do
    echo "== $preset: build"
    build "$preset"
    echo "== $preset: test"
    ctest --preset "$preset" --output-on-failure 2>&1
  done
}

install_deps
case "${1:-demo}" in
  demo) demo ;;
  test) run_tests ;;
  deps) ;;
  *) echo "usage: $0 [demo|test|deps]" >&2; exit 2 ;;
esac
