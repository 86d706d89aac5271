#!/usr/bin/python3
"""Writes the ONNX import fixtures: a small GPT-2-style model exported by torch.onnx (the
TorchScript-based exporter, opset 17, dynamic batch and sequence axes), once with its weights
inside the model and once with them in an external data file, plus its input and the logits
torch computes, as .npy files.

The model follows Hugging Face's GPT2LMHeadModel layer for layer (Conv1D-style x @ W + b, one
qkv projection split three ways, a causal-mask buffer applied with torch.where, gelu_new's tanh
form, an lm head tied to the token embedding) so the graph has the shape real GPT-2 exports
have; transformers itself is not needed.

Run with Debian's python3 (torch 1.13, onnx 1.12) from anywhere:
    /usr/bin/python3 tests/data/onnx/make_fixtures.py
"""
import math
import os

import numpy as np
import onnx
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB, POSITIONS, EMBD, HEADS, LAYERS = 64, 32, 32, 4, 2


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.randn(nf) * 0.05)

    def forward(self, x):
        shape = x.size()[:-1] + (self.weight.size(-1),)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(shape)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        mask = torch.tril(torch.ones((POSITIONS, POSITIONS), dtype=torch.bool))
        self.register_buffer("bias", mask.view(1, 1, POSITIONS, POSITIONS), persistent=False)
        self.register_buffer("masked_bias", torch.tensor(-1e4), persistent=False)
        self.c_attn = Conv1D(3 * EMBD, EMBD)
        self.c_proj = Conv1D(EMBD, EMBD)

    def split_heads(self, x):
        shape = x.size()[:-1] + (HEADS, EMBD // HEADS)
        return x.view(shape).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(EMBD, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype, device=w.device)
        tq, tk = q.size(-2), k.size(-2)
        causal = self.bias[:, :, tk - tq : tk, :tk]
        fill = torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype).to(w.device)
        w = torch.where(causal, w.to(w.dtype), fill)
        w = nn.functional.softmax(w, dim=-1)
        a = torch.matmul(w, v)
        a = a.permute(0, 2, 1, 3).contiguous()
        a = a.view(a.size()[:-2] + (EMBD,))
        return self.c_proj(a)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(EMBD, eps=1e-5)
        self.attn = Attention()
        self.ln_2 = nn.LayerNorm(EMBD, eps=1e-5)
        self.c_fc = Conv1D(4 * EMBD, EMBD)
        self.c_proj = Conv1D(EMBD, 4 * EMBD)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(gelu_new(self.c_fc(self.ln_2(x))))


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, EMBD)
        self.wpe = nn.Embedding(POSITIONS, EMBD)
        self.h = nn.ModuleList([Block() for _ in range(LAYERS)])
        self.ln_f = nn.LayerNorm(EMBD, eps=1e-5)
        self.lm_head = nn.Linear(EMBD, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2 does

    def forward(self, input_ids):
        shape = input_ids.size()
        input_ids = input_ids.view(-1, shape[-1])
        positions = torch.arange(0, shape[-1], dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return self.lm_head(x)


def export(model, ids, path, external):
    torch.onnx.export(model, (ids,), path, opset_version=17, input_names=["input_ids"],
                      output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "logits": {0: "batch", 1: "sequence"}})
    if external:
        m = onnx.load(path)
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="gpt2_ext.onnx.data", size_threshold=256)


# ---- one small model per op family, built with onnx.helper; expected outputs from numpy ----

from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def erf(x):
    return np.vectorize(math.erf)(x).astype(np.float32)


def write_op_model(name, nodes, inputs, outputs, initializers=(), opset=17):
    """inputs: [(name, array)], outputs: [(name, expected array)]; writes NAME.onnx, NAME_in<i>.npy
    and NAME_out<i>.npy."""
    def info(n, a):
        elem = {np.dtype(np.float32): F, np.dtype(np.int64): I64, np.dtype(bool): TensorProto.BOOL}
        return helper.make_tensor_value_info(n, elem[a.dtype], list(a.shape))
    graph = helper.make_graph(nodes, name, [info(n, a) for n, a in inputs],
                              [info(n, a) for n, a in outputs],
                              [i if isinstance(i, TensorProto) else numpy_helper.from_array(i[1], i[0])
                               for i in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name + ".onnx"))
    for k, (_, a) in enumerate(inputs):
        np.save(os.path.join(HERE, "%s_in%d.npy" % (name, k)), a)
    for k, (_, a) in enumerate(outputs):
        np.save(os.path.join(HERE, "%s_out%d.npy" % (name, k)), a)


def op_models():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = rng.standard_normal((3, 4)).astype(np.float32)
    p = np.abs(x) + 0.5
    n = helper.make_node
    # Elementwise arithmetic, with broadcasting and typed-field (float_data) initializers.
    nodes = [n("Add", ["x", "y"], ["add"], name="add"), n("Sub", ["x", "y"], ["sub"], name="sub"),
             n("Mul", ["x", "y"], ["mul"], name="mul"), n("Div", ["x", "yp"], ["div"], name="div"),
             n("Pow", ["p", "two"], ["pow"], name="pow"), n("Sqrt", ["p"], ["sqrt"], name="sqrt"),
             n("Reciprocal", ["p"], ["recip"], name="recip"), n("Neg", ["x"], ["neg"], name="neg"),
             n("Exp", ["x"], ["exp"], name="exp"), n("Log", ["p"], ["log"], name="log"),
             n("Erf", ["x"], ["erf"], name="erf"), n("Tanh", ["x"], ["tanh"], name="tanh"),
             n("Sigmoid", ["x"], ["sig"], name="sig"), n("Relu", ["x"], ["relu"], name="relu"),
             n("Max", ["x", "y"], ["max"], name="max"), n("Min", ["x", "y"], ["min"], name="min")]
    yp = (np.abs(y) + 1).astype(np.float32)
    two = helper.make_tensor("two", F, [], [2.0])  # a typed float_data initializer
    outs = [("add", x + y), ("sub", x - y), ("mul", x * y), ("div", x / yp), ("pow", p ** 2),
            ("sqrt", np.sqrt(p)), ("recip", 1 / p), ("neg", -x), ("exp", np.exp(x)),
            ("log", np.log(p)), ("erf", erf(x)), ("tanh", np.tanh(x)),
            ("sig", 1 / (1 + np.exp(-x))), ("relu", np.maximum(x, 0)),
            ("max", np.maximum(x, y)), ("min", np.minimum(x, y))]
    outs = [(k, v.astype(np.float32)) for k, v in outs]
    graph_inputs = [("x", x), ("y", y), ("p", p.astype(np.float32))]
    write_op_model("op_elementwise", nodes, graph_inputs, outs, [("yp", yp), two])

    # Comparisons, logic and Where.
    nodes = [n("Less", ["x", "y"], ["lt"], name="lt"), n("Greater", ["x", "y"], ["gt"], name="gt"),
             n("Equal", ["x", "x"], ["eq"], name="eq"), n("And", ["lt", "eq"], ["and"], name="and"),
             n("Or", ["lt", "gt"], ["or"], name="or"), n("Not", ["gt"], ["not"], name="not"),
             n("Where", ["not", "x", "y"], ["where"], name="where")]
    lt, gt = x < y, x > y
    outs = [("and", lt & True), ("or", lt | gt), ("where", np.where(~gt, x, y).astype(np.float32))]
    write_op_model("op_logic", nodes, [("x", x), ("y", y)], outs)

    # Norms and reductions (opset 17: ReduceSum takes axes as an input, ReduceMean/Max as an
    # attribute).
    w = rng.standard_normal(4).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    mu = x.mean(-1, keepdims=True)
    ln = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    e = np.exp(x - x.max(-1, keepdims=True))
    sm = e / e.sum(-1, keepdims=True)
    ax = np.array([1], dtype=np.int64)
    nodes = [n("Softmax", ["x"], ["sm"], name="sm", axis=-1),
             n("LogSoftmax", ["x"], ["lsm"], name="lsm", axis=-1),
             n("LayerNormalization", ["x", "w", "b"], ["ln"], name="ln", axis=-1, epsilon=1e-5),
             n("ReduceMean", ["x"], ["mean"], name="mean", axes=[1], keepdims=1),
             n("ReduceSum", ["x", "ax"], ["sum"], name="sum", keepdims=0),
             n("ReduceMax", ["x"], ["rmax"], name="rmax", axes=[-2], keepdims=1)]
    outs = [("sm", sm), ("lsm", np.log(sm)), ("ln", ln), ("mean", x.mean(1, keepdims=True)),
            ("sum", x.sum(1)), ("rmax", x.max(1, keepdims=True))]
    outs = [(k, v.astype(np.float32)) for k, v in outs]
    write_op_model("op_reduce", nodes, [("x", x)], outs, [("w", w), ("b", b), ("ax", ax)])

    # Layout, shape folding, matmuls.
    a = rng.standard_normal((3, 4)).astype(np.float32)
    wm = rng.standard_normal((4, 5)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    ids = np.array([[2, 0], [1, 2]], dtype=np.int64)
    i64 = lambda *v: np.array(v, dtype=np.int64)
    nodes = [n("Shape", ["x"], ["shape"], name="shape"),
             n("Gather", ["shape", "zero"], ["d0"], name="gather_dim", axis=0),
             n("Unsqueeze", ["d0", "zero1"], ["d0v"], name="unsq"),
             n("Concat", ["d0v", "m1"], ["newshape"], name="cat_shape", axis=0),
             n("Reshape", ["x", "newshape"], ["reshaped"], name="reshape"),
             n("Transpose", ["x"], ["tr"], name="transpose", perm=[2, 0, 1]),
             n("Flatten", ["x"], ["flat"], name="flatten", axis=2),
             n("Unsqueeze", ["a", "zero1"], ["a3"], name="unsq_a"),
             n("Squeeze", ["a3", "zero1"], ["a2"], name="squeeze"),
             n("Expand", ["a2", "eshape"], ["expanded"], name="expand"),
             n("Concat", ["x", "x"], ["cat"], name="cat", axis=1),
             n("Split", ["x", "splits"], ["s0", "s1"], name="split", axis=2),
             n("Slice", ["x", "st", "en", "axs", "stp"], ["sliced"], name="slice"),
             n("Gather", ["a", "ids"], ["gathered"], name="gather", axis=0),
             n("Size", ["x"], ["size"], name="size"),
             n("Cast", ["size"], ["sizef"], name="cast", to=F),
             n("ConstantOfShape", ["cshape"], ["filled"], name="cos",
               value=helper.make_tensor("v", F, [1], [1.5])),
             n("Add", ["filled", "sizef"], ["filled_plus"], name="add_size"),
             n("Range", ["r0", "r1", "r2"], ["range"], name="range"),
             n("CastLike", ["range", "a"], ["rangef"], name="castlike"),
             n("Trilu", ["a"], ["tril"], name="tril", upper=0),
             n("Trilu", ["a", "one"], ["triu"], name="triu", upper=1),
             n("MatMul", ["x", "wm"], ["mm"], name="matmul"),
             n("Gemm", ["a", "wm", "bias"], ["gemm"], name="gemm", alpha=0.5, beta=2.0),
             n("Constant", [], ["k"], name="const", value_floats=[1.0, 2.0, 3.0, 4.0]),
             n("Mul", ["a", "k"], ["scaled"], name="scale")]
    outs = [("reshaped", x.reshape(2, -1)), ("tr", x.transpose(2, 0, 1)),
            ("flat", x.reshape(6, 4)), ("expanded", np.broadcast_to(a, (2, 3, 4)).copy()),
            ("cat", np.concatenate([x, x], 1)), ("s0", x[:, :, :1]), ("s1", x[:, :, 1:]),
            ("sliced", x[:, 0:3:2, 1:]),
            ("gathered", a[ids]), ("filled_plus", np.full((2, 2), 1.5 + 24, np.float32)),
            ("rangef", np.arange(1, 7, 2).astype(np.float32)), ("tril", np.tril(a)),
            ("triu", np.triu(a, 1)), ("mm", x @ wm), ("gemm", 0.5 * (a @ wm) + 2 * bias),
            ("scaled", a * np.array([1, 2, 3, 4], np.float32))]
    outs = [(k, np.ascontiguousarray(v).astype(np.float32)) for k, v in outs]
    inits = [("zero", np.array(0, dtype=np.int64)), ("zero1", i64(0)), ("m1", i64(-1)), ("eshape", i64(2, 1, 1)),
             ("splits", i64(1, 3)), ("st", i64(0, 1)), ("en", i64(3, 100)), ("axs", i64(1, 2)),
             ("stp", i64(2, 1)), ("ids", ids), ("cshape", i64(2, 2)), ("r0", i64(1)),
             ("r1", i64(7)), ("r2", i64(2)), ("one", np.array(1, dtype=np.int64)), ("wm", wm), ("bias", bias)]
    write_op_model("op_layout", nodes, [("x", x), ("a", a)], outs, inits)

    # Refusals: an op attnc does not import, and external data outside the model's directory.
    nodes = [n("Celu", ["x"], ["y"], name="the_celu")]
    write_op_model("refuse_op", nodes, [("x", x)], [("y", x)])
    for name, location in [("refuse_escape", "../outside.bin"), ("refuse_absolute", "/etc/hosts")]:
        t = numpy_helper.from_array(y, "w")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", location
        graph = helper.make_graph([n("Add", ["x", "w"], ["z"], name="add")], name,
                                  [helper.make_tensor_value_info("x", F, [2, 3, 4])],
                                  [helper.make_tensor_value_info("z", F, [2, 3, 4])], [t])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(model, os.path.join(HERE, name + ".onnx"))


def main():
    op_models()
    torch.manual_seed(0)
    model = GPT2().eval()
    ids = torch.randint(0, VOCAB, (2, 7), dtype=torch.long)
    with torch.no_grad():
        logits = model(ids)
    export(model, ids, os.path.join(HERE, "gpt2.onnx"), external=False)
    export(model, ids, os.path.join(HERE, "gpt2_ext.onnx"), external=True)
    for name in ("gpt2", "gpt2_ext"):  # the NAME_in<i> / NAME_out<i> layout the tests read
        np.save(os.path.join(HERE, name + "_in0.npy"), ids.numpy())
        np.save(os.path.join(HERE, name + "_out0.npy"), logits.numpy())


if __name__ == "__main__":
    main()
