#!/usr/bin/env python3
"""The installed package, as an application developer meets it: `cmake --install` of this build
into a fresh prefix, then examples/embed built against that prefix twice, through CMake's
find_package(attnc) and through pkg-config, each compiling models/tiny.attn into a static
library with the installed attnc. Both programs must run, print the same predictions, agree
with `attnc run` on the same weights, and need no compiler library at run time."""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENS = ["5", "6", "7", "200", "3"]
FORBIDDEN = ("llvm", "mlir", "protobuf", "cjson", "edit")


def run(cmd, env=None, cwd=None):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    if p.returncode != 0:
        sys.exit(f"FAIL: exit status {p.returncode}")
    return p.stdout


def check_libraries(program):
    libraries = run(["ldd", program]).lower()
    for name in FORBIDDEN:
        if name in libraries:
            sys.exit(f"FAIL: {program} links {name}")


def predictions(output):
    return [line for line in output.splitlines() if line.startswith("after token")]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", required=True, help="the build tree to install")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    prefix = os.path.join(args.work, "prefix")
    run(["cmake", "--install", args.build, "--prefix", prefix])
    attnc = os.path.join(prefix, "bin", "attnc")
    for path in ("lib/libattnrt.a", "include/attn/runtime.h", "lib/cmake/attnc/attncConfig.cmake",
                 "lib/pkgconfig/attnc.pc"):
        if not os.path.exists(os.path.join(prefix, path)):
            sys.exit(f"FAIL: the install lacks {path}")
    example = os.path.join(ROOT, "examples", "embed")

    # CMake: find_package(attnc) and attnc_add_model.
    cmake_build = os.path.join(args.work, "cmake")
    run(["cmake", "-S", example, "-B", cmake_build, "-DCMAKE_PREFIX_PATH=" + prefix])
    run(["cmake", "--build", cmake_build])
    cmake_app = os.path.join(cmake_build, "tiny_app")
    check_libraries(cmake_app)
    by_cmake = predictions(run([cmake_app] + TOKENS))

    # pkg-config: the Makefile.
    make_build = os.path.join(args.work, "make")
    os.makedirs(make_build)
    run(["make", "-C", example, "OUT=" + make_build, "ATTNC=" + attnc,
         "PKG_CONFIG_PATH=" + os.path.join(prefix, "lib", "pkgconfig")])
    make_app = os.path.join(make_build, "tiny_app")
    check_libraries(make_app)
    by_make = predictions(run([make_app] + TOKENS))

    if len(by_cmake) != len(TOKENS) or by_cmake != by_make:
        sys.exit(f"FAIL: the two builds disagree:\n{by_cmake}\n{by_make}")
    # The same weights (both builds use seed 42) through attnc run.
    ids = os.path.join(args.work, "ids.npy")
    logits = os.path.join(args.work, "logits.npy")
    np.save(ids, np.array([[int(t) for t in TOKENS]], dtype=np.int64))
    run([attnc, "run", os.path.join(ROOT, "models", "tiny.attn"), "-w",
         os.path.join(make_build, "tiny.safetensors"), "-i", "input_ids=" + ids,
         "-o", "logits=" + logits])
    expected = np.load(logits)[0].argmax(axis=-1)
    for t, line in enumerate(by_make):
        if int(line.rsplit(" ", 1)[1]) != expected[t]:
            sys.exit(f"FAIL: position {t}: {line}, attnc run predicts {expected[t]}")
    print("OK: both builds run and agree with attnc run")


if __name__ == "__main__":
    main()
