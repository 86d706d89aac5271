#!/usr/bin/env python3
"""Make tiny Hugging Face checkpoints and the logits transformers computes for them.

The checkpoints under tests/data/hf/ were written by this script with the
transformers library itself (save_pretrained), so attnc's end-to-end tests bind
real checkpoint directories, with the tensor names, layouts and config.json
fields transformers writes, and compare against logits transformers computed.

  python3 make_hf_fixtures.py OUTDIR

Each model gets OUTDIR/<name>/ (config.json, *.safetensors[, index]) plus
input_ids.npy (int64 [B, T]) and logits.npy (float32 [B, T, vocab]).
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, ViTConfig,
                          ViTForImageClassification)


def save(name, model, out, ids, shard=None, input_name="input_ids"):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.eval()
    # Random init leaves some tensors at zero (biases) or one (norm weights);
    # perturb every parameter so the checkpoint exercises every tensor.
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    kwargs = {"safe_serialization": True}
    if shard:
        kwargs["max_shard_size"] = shard
    model.save_pretrained(d, **kwargs)
    with torch.no_grad():
        logits = model(**{input_name: torch.from_numpy(ids)}).logits.float().numpy()
    np.save(os.path.join(d, input_name + ".npy"), ids)
    np.save(os.path.join(d, "logits.npy"), logits.astype(np.float32))
    print(name, sorted(os.listdir(d)))
    print(open(os.path.join(d, "config.json")).read())


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    rng = np.random.default_rng(7)

    gpt2 = GPT2LMHeadModel(GPT2Config(
        vocab_size=384, n_positions=64, n_embd=64, n_layer=2, n_head=4,
        activation_function="gelu_new", layer_norm_epsilon=1e-5,
        attn_implementation="eager"))
    save("gpt2-tiny", gpt2, out, rng.integers(0, 384, size=(2, 11), dtype=np.int64))

    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-6, rope_theta=50000.0, tie_word_embeddings=False,
        hidden_act="silu", attn_implementation="eager"))
    save("llama-tiny-gqa", llama, out, rng.integers(0, 320, size=(2, 13), dtype=np.int64),
         shard="100KB")

    tied = LlamaForCausalLM(LlamaConfig(
        vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
        num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        hidden_act="silu", attn_implementation="eager"))
    save("llama-tiny-tied", tied, out, rng.integers(0, 256, size=(1, 9), dtype=np.int64))

    vit = ViTForImageClassification(ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=96, layer_norm_eps=1e-12, hidden_act="gelu",
        num_labels=5, attn_implementation="eager"))
    pixels = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    save("vit-tiny", vit, out, pixels, input_name="pixel_values")


if __name__ == "__main__":
    main()
