#!/usr/bin/python3
"""Run an independent NumPy reference model (tests/ref) on a checkpoint; write its logits.

Part of attnc's test references: numpy + stdlib only, independent of attnc.

  run_ref.py {gpt2|llama} CHECKPOINT_DIR_OR_FILE IDS.npy OUT.npy [--config config.json]

CHECKPOINT is a directory (model.safetensors, or sharded with
model.safetensors.index.json) or a single .safetensors file.  config.json is
taken from --config, else from the checkpoint directory (or the file's
directory).  IDS.npy holds integer token ids [B, T] (or [T], read as [1, T]).
OUT.npy receives float32 logits [B, T, vocab], computed in float64.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref  # noqa: E402
import llama_ref  # noqa: E402
import safetensors_np  # noqa: E402

MODELS = {"gpt2": gpt2_ref.forward, "llama": llama_ref.forward}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("checkpoint", help="checkpoint directory or .safetensors file")
    ap.add_argument("ids", help="input ids .npy, integer [B, T]")
    ap.add_argument("out", help="output logits .npy, float32 [B, T, vocab]")
    ap.add_argument("--config", help="config.json (default: next to the checkpoint)")
    args = ap.parse_args()

    cfg_path = args.config or os.path.join(
        args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint) or ".",
        "config.json")
    if not os.path.isfile(cfg_path):
        sys.exit(f"run_ref: no config: {cfg_path} not found (pass --config)")
    with open(cfg_path) as f:
        config = json.load(f)
    ids = np.load(args.ids)
    if not np.issubdtype(ids.dtype, np.integer):
        sys.exit(f"run_ref: {args.ids}: ids must be integers, got {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        sys.exit(f"run_ref: {args.ids}: ids must be [B, T], got shape {ids.shape}")

    weights = safetensors_np.load(args.checkpoint)
    logits = MODELS[args.model](weights, config, ids)
    np.save(args.out, logits.astype(np.float32))


if __name__ == "__main__":
    main()
