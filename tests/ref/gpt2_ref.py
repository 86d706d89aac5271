#!/usr/bin/python3
"""Independent NumPy reference of Hugging Face GPT2LMHeadModel's forward pass.

Part of attnc's test references: numpy + stdlib only, no torch / transformers,
and no code shared with attnc.  Everything is computed in float64.

  forward(weights, config, input_ids[B, T]) -> logits float64 [B, T, vocab]

weights: {name: array} as stored by transformers (transformer.wte.weight, ...)
or in the original GPT-2 hub layout without the "transformer." prefix
(wte.weight, h.0.attn.c_attn.weight, ...).  Conv1D weights are stored
[in, out], so y = x @ W + b.
"""
import math

import numpy as np


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


ACTIVATIONS = {"gelu_new": gelu_new, "gelu_pytorch_tanh": gelu_new, "gelu": gelu_erf}


def causal_attention(q, k, v, scale):
    """q, k, v: [B, H, T, d] -> [B, H, T, d], position t attends to 0..t."""
    t = q.shape[-2]
    s = (q @ k.swapaxes(-1, -2)) * scale
    s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def forward(weights, config, input_ids):
    prefixed = any(k.startswith("transformer.") for k in weights)

    def w(name):
        key = "transformer." + name if prefixed and not name.startswith("lm_head.") else name
        return np.asarray(weights[key], dtype=np.float64)

    ids = np.asarray(input_ids, dtype=np.int64)
    bsz, t = ids.shape
    n_head, n_layer = config["n_head"], config["n_layer"]
    eps = config.get("layer_norm_epsilon", 1e-5)
    act = ACTIVATIONS[config.get("activation_function", "gelu_new")]
    if config.get("add_cross_attention"):
        raise NotImplementedError("cross-attention GPT-2 is not covered")

    x = w("wte.weight")[ids] + w("wpe.weight")[np.arange(t)][None]
    dim = x.shape[-1]
    hd = dim // n_head
    for i in range(n_layer):
        p = f"h.{i}."
        h = layer_norm(x, w(p + "ln_1.weight"), w(p + "ln_1.bias"), eps)
        qkv = h @ w(p + "attn.c_attn.weight") + w(p + "attn.c_attn.bias")
        q, k, v = (a.reshape(bsz, t, n_head, hd).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, -1))
        scale = 1.0 / math.sqrt(hd) if config.get("scale_attn_weights", True) else 1.0
        if config.get("scale_attn_by_inverse_layer_idx"):
            scale /= i + 1
        a = causal_attention(q, k, v, scale).transpose(0, 2, 1, 3).reshape(bsz, t, dim)
        x = x + a @ w(p + "attn.c_proj.weight") + w(p + "attn.c_proj.bias")
        h = layer_norm(x, w(p + "ln_2.weight"), w(p + "ln_2.bias"), eps)
        h = act(h @ w(p + "mlp.c_fc.weight") + w(p + "mlp.c_fc.bias"))
        x = x + h @ w(p + "mlp.c_proj.weight") + w(p + "mlp.c_proj.bias")
    x = layer_norm(x, w("ln_f.weight"), w("ln_f.bias"), eps)
    head = w("lm_head.weight") if "lm_head.weight" in weights else w("wte.weight")
    return x @ head.T
