#!/usr/bin/python3
"""GPT-2 (Hugging Face GPT2LMHeadModel semantics) as a torch module, built from a safetensors
file, for the peers of bench/cpu: torch runs it, and its ONNX export runs in ONNX Runtime.

The semantics are those of models/gpt2.attn and tests/ref/gpt2_ref.py: learned positions,
pre-LayerNorm blocks, Conv1D projections stored [in, out] (y = x W + b), causal attention with
scale 1/sqrt(head dim), gelu_new (the tanh GELU), final LayerNorm, logits for every position
through lm_head.weight or, when absent, the tied transformer.wte.weight.

  python3 gpt2_torch.py --weights W.safetensors --config C.json --ids IDS.npy --export OUT.onnx
      checks the torch logits against tests/ref/gpt2_ref.py (float64 NumPy) and, when they
      agree, exports the module to ONNX (opset 17, static shapes of IDS).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REF_DIR = os.path.join(HERE, "..", "..", "tests", "ref")

# The torch logits must match the float64 reference this closely (relative L2) before export.
REF_TOLERANCE = 1e-4


def load_weights(path):
    sys.path.insert(0, REF_DIR)
    import safetensors_np

    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in safetensors_np.load(path).items()}


class Block(torch.nn.Module):
    def __init__(self, w, prefix, n_head, eps):
        super().__init__()
        self.n_head, self.eps = n_head, eps
        self.head_dim = w[prefix + "ln_1.weight"].shape[0] // n_head

        def p(name):
            return torch.nn.Parameter(torch.from_numpy(w[prefix + name]), requires_grad=False)

        self.ln1_w, self.ln1_b = p("ln_1.weight"), p("ln_1.bias")
        self.attn_w, self.attn_b = p("attn.c_attn.weight"), p("attn.c_attn.bias")
        self.proj_w, self.proj_b = p("attn.c_proj.weight"), p("attn.c_proj.bias")
        self.ln2_w, self.ln2_b = p("ln_2.weight"), p("ln_2.bias")
        self.fc_w, self.fc_b = p("mlp.c_fc.weight"), p("mlp.c_fc.bias")
        self.out_w, self.out_b = p("mlp.c_proj.weight"), p("mlp.c_proj.bias")

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = self.head_dim
        h = torch.nn.functional.layer_norm(x, (d,), self.ln1_w, self.ln1_b, self.eps)
        q, k, v = torch.addmm(self.attn_b, h.reshape(b * t, d), self.attn_w).split(d, dim=1)
        q, k, v = (a.reshape(b, t, self.n_head, hd).transpose(1, 2) for a in (q, k, v))
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
        a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(b * t, d)
        x = x + torch.addmm(self.proj_b, a, self.proj_w).reshape(b, t, d)
        h = torch.nn.functional.layer_norm(x, (d,), self.ln2_w, self.ln2_b, self.eps)
        h = torch.addmm(self.fc_b, h.reshape(b * t, d), self.fc_w)
        h = torch.nn.functional.gelu(h, approximate="tanh")
        return x + torch.addmm(self.out_b, h, self.out_w).reshape(b, t, d)


class GPT2(torch.nn.Module):
    def __init__(self, w, config):
        super().__init__()
        self.eps = config.get("layer_norm_epsilon", 1e-5)
        if config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError("only the tanh GELU (gelu_new) is built here")
        if config.get("scale_attn_by_inverse_layer_idx") or not config.get("scale_attn_weights", True):
            raise ValueError("only the default attention scale 1/sqrt(head dim) is built here")

        def p(name):
            return torch.nn.Parameter(torch.from_numpy(w[name]), requires_grad=False)

        self.wte, self.wpe = p("transformer.wte.weight"), p("transformer.wpe.weight")
        self.head = p("lm_head.weight") if "lm_head.weight" in w else self.wte
        self.blocks = torch.nn.ModuleList(
            Block(w, f"transformer.h.{i}.", config["n_head"], self.eps) for i in range(config["n_layer"]))
        self.lnf_w, self.lnf_b = p("transformer.ln_f.weight"), p("transformer.ln_f.bias")

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte[ids] + self.wpe[:t]
        mask = torch.full((t, t), float("-inf")).triu(1)
        for block in self.blocks:
            x = block(x, mask)
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), self.lnf_w, self.lnf_b, self.eps)
        return torch.matmul(x, self.head.t())


def build(weights_path, config_path):
    config = json.load(open(config_path))
    model = GPT2(load_weights(weights_path), config).eval()
    return model, config


def rel_l2(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check_against_reference(model, config, weights_path, ids):
    """Relative L2 of the torch logits against tests/ref/gpt2_ref.py's float64 forward pass."""
    sys.path.insert(0, REF_DIR)
    import gpt2_ref
    import safetensors_np

    with torch.inference_mode():
        got = model(torch.from_numpy(ids)).numpy()
    want = gpt2_ref.forward(safetensors_np.load(weights_path), config, ids)
    return rel_l2(got, want)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--ids", required=True, help="int64 .npy [1, T]")
    ap.add_argument("--export", required=True, help="the .onnx file to write")
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, config = build(a.weights, a.config)
    ids = np.load(a.ids).astype(np.int64)
    err = check_against_reference(model, config, a.weights, ids)
    print(json.dumps({"torch_vs_reference_rel_l2": err}))
    if not err <= REF_TOLERANCE:
        sys.exit(f"gpt2_torch: torch logits differ from tests/ref/gpt2_ref.py: rel L2 {err:.3g}")
    torch.onnx.export(model, (torch.from_numpy(ids),), a.export, input_names=["input_ids"],
                      output_names=["logits"], opset_version=17, do_constant_folding=True)


if __name__ == "__main__":
    main()
