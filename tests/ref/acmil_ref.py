#!/usr/bin/python3
"""ACMIL (gated-attention MIL, arch "ga") at inference, in NumPy: an independent reference
for models/acmil.attn. numpy + stdlib only; independent of attnc.

  acmil_ref.py WEIGHTS.safetensors CONFIG.json FEATURES.npy LOGITS.npy ATTENTION.npy

h = relu(X Wr^T); A = Wa (tanh(h V^T + bV) * sigmoid(h U^T + bU))^T + ba   [M, N]
abar = mean_m softmax_n(A); logits = (abar h) Ws^T + bs                     [1, C]
Computed in float64, written as float32.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402


def forward(w, x):
    def linear(t, prefix):
        return t @ w[prefix + "weight"].T + w[prefix + "bias"]

    h = np.maximum(x @ w["dimreduction.fc1.weight"].T, 0.0)
    gate = np.tanh(linear(h, "attention.attention_V.0.")) * \
        (1.0 / (1.0 + np.exp(-linear(h, "attention.attention_U.0."))))
    a = w["attention.attention_weights.weight"] @ gate.T + w["attention.attention_weights.bias"][:, None]
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    pooled = p.mean(axis=0, keepdims=True) @ h
    return linear(pooled, "slide_classifier.fc."), a


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    weights_path, _config, features, logits_out, attention_out = sys.argv[1:]
    w = {k: v.astype(np.float64) for k, v in safetensors_np.load(weights_path).items()}
    logits, a = forward(w, np.load(features).astype(np.float64))
    np.save(logits_out, logits.astype(np.float32))
    np.save(attention_out, a.astype(np.float32))


if __name__ == "__main__":
    main()
