#!/usr/bin/python3
"""The ONNX models ONNX Runtime runs in the attention case of bench/cpu/run.sh: three ways to
express attention over q, k, v (batch 1, 8 heads, f32, static shapes), of which the report keeps
the fastest per shape.

  graph   the matmul-softmax-matmul module exported by torch.onnx (opset 17); causal adds a
          -inf upper-triangle mask stored as an initializer. Run with optimisation level 'all'
          (ONNX Runtime folds the scale and the transpose into the first MatMul).
  att23   the ONNX opset-23 Attention op, q, k, v [1, H, T, D], is_causal for causal.
  mha     com.microsoft MultiHeadAttention, q, k, v [1, T, H*D], unidirectional for causal
          (ONNX Runtime's flash-style CPU kernel).

The local onnx package (1.12) does not know opset 23; the att23 model is written by hand with IR
version 10, which ONNX Runtime 1.30 reads.
"""
import math

import onnx
import torch
from onnx import TensorProto, helper

H = 8


class Attention(torch.nn.Module):
    def __init__(self, t, d, causal):
        super().__init__()
        self.scale = 1.0 / math.sqrt(d)
        self.causal = causal
        if causal:
            self.register_buffer("mask", torch.full((t, t), float("-inf")).triu(1))

    def forward(self, q, k, v):
        s = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if self.causal:
            s = s + self.mask
        return torch.matmul(torch.softmax(s, dim=-1), v)


def write_graph(t, d, causal, path):
    q = torch.zeros(1, H, t, d)
    torch.onnx.export(Attention(t, d, causal).eval(), (q, q, q), path, input_names=["q", "k", "v"],
                      output_names=["o"], opset_version=17, do_constant_folding=True)


def write_att23(t, d, causal, path):
    node = helper.make_node("Attention", ["q", "k", "v"], ["o"], is_causal=int(causal))
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, H, t, d]) for n in "qkv"]
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, H, t, d])
    model = helper.make_model(helper.make_graph([node], "att23", ins, [out]),
                              opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.save(model, path)


def write_mha(t, d, causal, path):
    attrs = {"num_heads": H}
    if causal:
        attrs["unidirectional"] = 1
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", **attrs)
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, t, H * d]) for n in "qkv"]
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, t, H * d])
    model = helper.make_model(helper.make_graph([node], "mha", ins, [out]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path)


# variant -> (writer, layout of its inputs: "bhtd" [1, H, T, D] or "btE" [1, T, H*D])
VARIANTS = {"graph": (write_graph, "bhtd"), "att23": (write_att23, "bhtd"), "mha": (write_mha, "btE")}
