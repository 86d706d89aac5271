#!/usr/bin/python3
"""Compare two .npy arrays by relative L2 error ||a - b|| / ||b|| (b is the reference).

Part of attnc's test references: numpy + stdlib only, independent of attnc.

  compare.py A.npy B.npy [--rtol-l2 1e-5] [--any-dtype]

Prints one line with the relative L2 error and max |a - b|.  Exit status:
0 within the bound; 1 over the bound, or NaN / Inf in either array;
2 shape mismatch, dtype mismatch (unless --any-dtype), or a non-numeric array.
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="array under test (.npy)")
    ap.add_argument("b", help="reference array (.npy)")
    ap.add_argument("--rtol-l2", type=float, default=1e-5, help="bound on ||a-b||/||b|| (default 1e-5)")
    ap.add_argument("--any-dtype", action="store_true", help="allow a and b to differ in dtype")
    args = ap.parse_args()

    a, b = np.load(args.a), np.load(args.b)
    for name, x in ((args.a, a), (args.b, b)):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            print(f"FAIL: {name}: dtype {x.dtype} is not numeric")
            return 2
    if a.shape != b.shape:
        print(f"FAIL: shape mismatch: {args.a} {a.shape} vs {args.b} {b.shape}")
        return 2
    if a.dtype != b.dtype and not args.any_dtype:
        print(f"FAIL: dtype mismatch: {args.a} {a.dtype} vs {args.b} {b.dtype} (--any-dtype to allow)")
        return 2
    for name, x in ((args.a, a), (args.b, b)):
        bad = int(np.count_nonzero(~np.isfinite(x))) if np.issubdtype(x.dtype, np.floating) else 0
        if bad:
            print(f"FAIL: {name}: {bad} of {x.size} values are NaN or Inf "
                  f"(first at index {np.unravel_index(np.argmax(~np.isfinite(x)), x.shape)})")
            return 1
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff, ref = np.linalg.norm(a64 - b64), np.linalg.norm(b64)
    err = diff / ref if ref > 0 else (0.0 if diff == 0 else float("inf"))
    max_abs = float(np.abs(a64 - b64).max()) if a.size else 0.0
    ok = err <= args.rtol_l2
    print(f"{'OK' if ok else 'FAIL'}: rel_l2 {err:.3e} (bound {args.rtol_l2:.1e}) "
          f"max_abs {max_abs:.3e} shape {list(a.shape)} {a.dtype}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
