#!/usr/bin/python3
"""attnc run on the GPT-2 ONNX fixtures (weights inline and in external data) gives torch's logits
within relative L2 1e-4 on the interp and cpu backends, and attnc import writes a .attn and
safetensors pair that runs to the same logits.

usage: onnx_run_test.py ATTNC DATA_DIR"""
import os
import subprocess
import sys
import tempfile

import numpy as np


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    attnc, data = sys.argv[1], sys.argv[2]
    expected = np.load(os.path.join(data, "gpt2_out0.npy"))
    ids = os.path.join(data, "gpt2_in0.npy")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.npy")
        runs = [[model, "-b", backend] for model in ("gpt2.onnx", "gpt2_ext.onnx")
                for backend in ("interp", "cpu")]
        for model, *flags in runs:
            subprocess.run([attnc, "run", os.path.join(data, model), "-i", "input_ids=" + ids,
                            "-o", "logits=" + out] + flags, check=True)
            error = rel_l2(np.load(out), expected)
            print(model, flags, "relative L2", error)
            assert error <= 1e-4, (model, flags, error)
        attn = os.path.join(tmp, "gpt2.attn")
        weights = os.path.join(tmp, "gpt2.safetensors")
        subprocess.run([attnc, "import", os.path.join(data, "gpt2.onnx"), "-o", attn,
                        "--weights-out", weights], check=True)
        subprocess.run([attnc, "run", attn, "-w", weights, "-i", "input_ids=" + ids, "-o",
                        "logits=" + out, "-b", "interp"], check=True)
        error = rel_l2(np.load(out), expected)
        print("imported .attn relative L2", error)
        assert error <= 1e-4, error
        stats = subprocess.run([attnc, "opt", os.path.join(data, "gpt2.onnx"), "-p", "default",
                                "--stats"], check=True, capture_output=True, text=True).stdout
        assert "attention nodes: 2" in stats, stats


if __name__ == "__main__":
    main()
