#!/usr/bin/env python3
"""Deployment figures: the size of libattnrt.a stripped, and how soon a standalone GPT-2
executable (GPT-2 small's shape, random weights, embedded: 0.5 GB) reaches its first kernel,
side by side with `attnc run` of the same model, which compiles it first (JIT, from a warm
kernel cache and from a cold one). Also the run time of each, which must match: the same kernels.

Usage: bench.py --attnc RELEASE_ATTNC --runtime RELEASE_LIBATTNRT --work DIR [--rounds N]"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    return p


def stripped_size(library, work):
    copy = os.path.join(work, "libattnrt.a")
    shutil.copy(library, copy)
    run(["strip", "--strip-unneeded", copy])
    return os.path.getsize(copy)


def exe_first_kernel(exe, ids):
    """(ms from exec to the first kernel, ms from main() to it, ms of the run)."""
    start = time.monotonic()
    p = run([exe, "-i", "input_ids=" + ids, "--timing"])
    m = re.search(r"first kernel: ([0-9.]+) ms after main\(\) \(monotonic clock ([0-9.]+) s\)",
                  p.stderr)
    after_main, at = float(m.group(1)), float(m.group(2))
    return (at - start) * 1e3, after_main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    model = os.path.join(ROOT, "models", "gpt2.attn")
    config = os.path.join(ROOT, "models", "configs", "gpt2-small.json")
    weights = os.path.join(args.work, "gpt2")
    os.makedirs(weights, exist_ok=True)
    if not os.path.exists(os.path.join(weights, "model.safetensors")):
        run([args.attnc, "init-weights", model, "--config", config, "-o",
             os.path.join(weights, "model.safetensors"), "--seed", "1"])
        shutil.copy(config, os.path.join(weights, "config.json"))
    ids = os.path.join(args.work, "ids.npy")
    np.save(ids, (np.arange(8, dtype=np.int64) * 997 % 50257).reshape(1, 8))

    size = stripped_size(args.runtime, args.work)
    exe = os.path.join(args.work, "gpt2_exe")
    t = time.monotonic()
    run([args.attnc, "compile", model, "-w", weights, "-o", exe])
    compile_s = time.monotonic() - t

    cache = os.path.join(args.work, "cache")
    exe_total, exe_main, jit_warm, jit_cold = [], [], [], []
    for _ in range(args.rounds):
        total, after_main = exe_first_kernel(exe, ids)
        exe_total.append(total)
        exe_main.append(after_main)
        # attnc run: compile (from the disk cache, then with none) and one run.
        env = dict(os.environ, ATTN_CACHE_DIR=cache)
        t = time.monotonic()
        run([args.attnc, "run", model, "-w", weights, "-i", "input_ids=" + ids], env=env)
        jit_warm.append((time.monotonic() - t) * 1e3)
        env = dict(os.environ, ATTN_CACHE_DIR="")
        t = time.monotonic()
        run([args.attnc, "run", model, "-w", weights, "-i", "input_ids=" + ids], env=env)
        jit_cold.append((time.monotonic() - t) * 1e3)
    runs = {}
    for name, cmd in (("exe", [exe, "-i", "input_ids=" + ids, "--iters", "20"]),
                      ("attnc run", [args.attnc, "bench", model, "-w", weights, "-i",
                                     "input_ids=" + ids, "--iters", "20"])):
        p = run(cmd, env=dict(os.environ, ATTN_CACHE_DIR=cache))
        runs[name] = float(re.search(r"median_ms=([0-9.]+)", p.stdout + p.stderr).group(1))

    med = statistics.median
    print(f"libattnrt.a stripped: {size} bytes ({size / 1024:.1f} KiB); budget 300 KB")
    print(f"gpt2 executable: {os.path.getsize(exe) / 2**20:.0f} MiB, built in {compile_s:.1f} s")
    print(f"first kernel, exec to kernel: median {med(exe_total):.2f} ms "
          f"(min {min(exe_total):.2f}, max {max(exe_total):.2f}); budget 50 ms")
    print(f"first kernel, main() to kernel: median {med(exe_main):.2f} ms")
    print(f"attnc run (compile + run, whole process): warm cache {med(jit_warm):.0f} ms, "
          f"no cache {med(jit_cold):.0f} ms")
    print(f"one run of 8 tokens, median of 20: exe {runs['exe']:.3f} ms, "
          f"attnc bench {runs['attnc run']:.3f} ms")


if __name__ == "__main__":
    main()
