#!/usr/bin/python3
"""torch peer of bench/cpu/bench.py: a persistent process that builds torch workloads and times
them on request, so that the driver can interleave it with the other peers.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.
  {"cmd":"info"}                                            -> versions, threads, capability
  {"cmd":"load","name":N,"kind":"attention","inputs":{"q":..,"k":..,"v":..},"causal":B,
   "dtype":"f32"|"bf16"}       softmax(q k^T / sqrt(D) [+ causal mask]) v, as matmul-softmax-matmul
                               (torch 1.13 has no scaled_dot_product_attention)
  {"cmd":"load","name":N,"kind":"matmul","inputs":{"a":..,"b":..}}      torch.matmul(a, b)
  {"cmd":"load","name":N,"kind":"gpt2","weights":W,"config":C,"inputs":{"input_ids":..}}
                               the GPT-2 module of gpt2_torch.py
  {"cmd":"run","name":N,"iters":K,"warmup":W}               -> {"t":[seconds of each timed run]}
  {"cmd":"save","name":N,"path":FILE}                       -> output of one run, raw float32 LE
  {"cmd":"unload"} / {"cmd":"quit"}
Threads: NTHREADS (default 2) intra-op, 1 inter-op. The driver sets OMP_WAIT_POLICY=PASSIVE and
ATEN_CPU_CAPABILITY to the host's widest vector ISA (PEERS.md: Debian's torch is erratic on two
cores otherwise).
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch

THREADS = int(os.environ.get("NTHREADS", "2"))
torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)

PROTOCOL = sys.stdout
sys.stdout = sys.stderr  # library prints must not reach the protocol channel

workloads = {}


def attention_fn(q, k, v, causal):
    scale = 1.0 / math.sqrt(q.shape[-1])
    mask = torch.full((q.shape[-2], k.shape[-2]), float("-inf"), dtype=q.dtype).triu(1) if causal else None

    def run():
        s = torch.matmul(q, k.transpose(-1, -2))
        s.mul_(scale)
        if mask is not None:
            s.add_(mask)
        return torch.matmul(torch.softmax(s, dim=-1), v)

    return run


def load(m):
    tensors = {k: torch.from_numpy(np.load(p)) for k, p in m.get("inputs", {}).items()}
    kind = m["kind"]
    if kind == "attention":
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[m.get("dtype", "f32")]
        q, k, v = (tensors[n].to(dtype) for n in "qkv")
        fn = attention_fn(q, k, v, m.get("causal", False))
    elif kind == "matmul":
        a, b = tensors["a"], tensors["b"]

        def fn():
            return torch.matmul(a, b)
    elif kind == "gpt2":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import gpt2_torch

        model, _ = gpt2_torch.build(m["weights"], m["config"])
        ids = tensors["input_ids"].to(torch.int64)

        def fn():
            return model(ids)
    else:
        raise ValueError("unknown kind " + kind)
    workloads[m["name"]] = fn
    return {"ok": True}


def run(m):
    fn = workloads[m["name"]]
    times = []
    with torch.inference_mode():
        for _ in range(m.get("warmup", 0)):
            fn()
        for _ in range(m.get("iters", 1)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return {"t": times}


def save(m):
    with torch.inference_mode():
        out = workloads[m["name"]]()
    out.float().contiguous().numpy().tofile(m["path"])
    return {"dims": list(out.shape)}


def info():
    return {"torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
            "capability": [line.strip() for line in torch.__config__.show().splitlines()
                           if "CPU capability" in line],
            "env": {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "OMP_WAIT_POLICY")}}


def main():
    handlers = {"info": lambda m: info(), "load": load, "run": run, "save": save,
                "unload": lambda m: workloads.clear() or {"ok": True}}
    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        if m["cmd"] == "quit":
            PROTOCOL.write(json.dumps({"ok": True}) + "\n")
            PROTOCOL.flush()
            return
        try:
            reply = handlers[m["cmd"]](m)
        except Exception as e:  # reported to the driver, which stops with the message
            import traceback

            reply = {"error": repr(e), "traceback": traceback.format_exc()}
        PROTOCOL.write(json.dumps(reply) + "\n")
        PROTOCOL.flush()


if __name__ == "__main__":
    main()
