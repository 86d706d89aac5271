#!/usr/bin/python3
"""Independent NumPy reference of Hugging Face LlamaForCausalLM's forward pass.

Part of attnc's test references: numpy + stdlib only, no torch / transformers,
and no code shared with attnc.  Everything is computed in float64.

  forward(weights, config, input_ids[B, T]) -> logits float64 [B, T, vocab]

Covers RMSNorm, grouped-query attention (query head h reads kv head
h // (H / Hkv)), default RoPE in the rotate-half layout at positions 0..T-1,
SwiGLU MLP and tied or untied lm_head.  Linear weights are stored [out, in],
so y = x @ W.T (+ bias when the checkpoint has one: attention_bias / mlp_bias).
"""
import math

import numpy as np


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope_theta(config):
    rp = config.get("rope_parameters") or {}
    rs = config.get("rope_scaling") or {}
    kind = rp.get("rope_type") or rs.get("rope_type") or rs.get("type") or "default"
    if kind != "default":
        raise NotImplementedError(f"rope_type {kind!r} is not covered (only default RoPE)")
    return float(config.get("rope_theta") or rp.get("rope_theta") or 10000.0)


def rope(x, theta):
    """x: [B, H, T, d]; rotate-half RoPE at positions 0..T-1."""
    t, d = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(t, dtype=np.float64)[:, None] * inv_freq[None]
    ang = np.concatenate([ang, ang], -1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * np.cos(ang) + np.concatenate([-x2, x1], -1) * np.sin(ang)


def causal_attention(q, k, v, scale):
    """q, k, v: [B, H, T, d] -> [B, H, T, d], position t attends to 0..t."""
    t = q.shape[-2]
    s = (q @ k.swapaxes(-1, -2)) * scale
    s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def forward(weights, config, input_ids):
    def w(name):
        return np.asarray(weights[name], dtype=np.float64)

    def linear(x, name):
        y = x @ w(name + ".weight").T
        return y + w(name + ".bias") if name + ".bias" in weights else y

    if config.get("hidden_act", "silu") != "silu":
        raise NotImplementedError(f"hidden_act {config['hidden_act']!r} is not covered")
    ids = np.asarray(input_ids, dtype=np.int64)
    bsz, t = ids.shape
    n_h = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_h
    hd = config.get("head_dim") or config["hidden_size"] // n_h
    eps = config.get("rms_norm_eps", 1e-6)
    theta = rope_theta(config)

    x = w("model.embed_tokens.weight")[ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w(p + "input_layernorm.weight"), eps)
        q = linear(h, p + "self_attn.q_proj").reshape(bsz, t, n_h, hd).transpose(0, 2, 1, 3)
        k = linear(h, p + "self_attn.k_proj").reshape(bsz, t, n_kv, hd).transpose(0, 2, 1, 3)
        v = linear(h, p + "self_attn.v_proj").reshape(bsz, t, n_kv, hd).transpose(0, 2, 1, 3)
        q, k = rope(q, theta), rope(k, theta)
        group = n_h // n_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # head h -> kv h // group
        a = causal_attention(q, k, v, 1.0 / math.sqrt(hd))
        x = x + linear(a.transpose(0, 2, 1, 3).reshape(bsz, t, n_h * hd), p + "self_attn.o_proj")
        h = rms_norm(x, w(p + "post_attention_layernorm.weight"), eps)
        h = silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj")
        x = x + linear(h, p + "mlp.down_proj")
    x = rms_norm(x, w("model.norm.weight"), eps)
    tied = config.get("tie_word_embeddings", False) or "lm_head.weight" not in weights
    return x @ w("model.embed_tokens.weight" if tied else "lm_head.weight").T
