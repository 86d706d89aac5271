#!/usr/bin/env python3
"""attnc's end-to-end tests: one ctest case is one invocation of this script.

  model_test.py --attnc ATTNC --work DIR hf MODEL CHECKPOINT_DIR [--ids-dtype int32]
                [--strip-prefix transformer.] [--input pixel_values]
      attnc run MODEL on a Hugging Face fixture (tests/data/hf/X: INPUT.npy, by default
      input_ids.npy, and the logits transformers computed) and compare the logits. --ids-dtype feeds the ids in
      another dtype; --strip-prefix rewrites the checkpoint without that name prefix, as a
      checkpoint saved from the base model (GPT2Model) names its tensors.
  model_test.py --attnc ATTNC --work DIR attnb MODEL CHECKPOINT_DIR [--input NAME]
      The same through an .attnb file: its logits equal those of the .attn exactly.
  model_test.py --attnc ATTNC --work DIR random MODEL ARCH CONFIG
      attnc init-weights MODEL with CONFIG, run attnc and the NumPy reference
      (tests/ref/run_ref.py ARCH) on the same weights and ids, and compare.
  model_test.py --attnc ATTNC --work DIR mil MODEL CONFIG
      ACMIL: init-weights, a random bag of instance features, attnc against
      tests/ref/acmil_ref.py on both outputs (logits and the attention logits).
  model_test.py --attnc ATTNC --work DIR demo MODEL
      init-weights twice (the files must be identical), run, check the outputs are finite.
  model_test.py --attnc ATTNC --work DIR stats MODEL CONFIG --max-ratio R [-D NAME=VALUE]...
                [--passes PIPELINE]
      attnc opt MODEL --config CONFIG -p PIPELINE (default: default) --stats with the -D
      bindings; the report's planned peak bytes must be at most R times its largest live set.
  model_test.py --attnc ATTNC --work DIR fails EXIT SUBSTRINGS -- ARGS...
      attnc ARGS must exit with status EXIT and print every |-separated piece of SUBSTRINGS
      on stderr. @NAME in an
      argument is replaced by a file made in DIR (see make_fixture): @bad.npy is junk.

Every attnc run must be free of sanitizer reports, whatever its exit status.
"""
import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "tests", "ref")
PYTHON = "/usr/bin/python3"
RTOL_HF = 1e-5  # parity needs 1e-4; float32 evaluation gets ~1e-7
RTOL_REF = 1e-5


def run(cmd, expect=0):
    """Runs cmd, echoes its output, returns (status, stdout, stderr)."""
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    for marker in ("Sanitizer", "runtime error:"):
        if marker in p.stderr:
            sys.exit(f"FAIL: sanitizer report from {cmd[0]}")
    if expect is not None and p.returncode != expect:
        sys.exit(f"FAIL: exit status {p.returncode}, expected {expect}")
    return p.returncode, p.stdout, p.stderr


def run_model(args, model, weights, bindings, config=None):
    """Runs `model` with `weights` on -i/-o `bindings` (["-i", "x=a.npy", "-o", ...]) the way
    --backend says: `attnc run -b interp|cpu`; `exe`: attnc compile to a standalone executable
    (`exe-external`: its weights in a safetensors file beside it), then that executable;
    `artifact`: attnc compile --emit artifact, then `attnc run` of the .attnx."""
    flags = ["-w", weights] + (["--config", config] if config else [])
    if args.backend in ("interp", "cpu"):
        run([args.attnc, "run", model] + flags + bindings + ["-b", args.backend])
        return
    if args.backend in ("exe", "exe-external"):
        exe = os.path.join(args.work, "model_exe")
        external = ["--weights-external"] if args.backend == "exe-external" else []
        run([args.attnc, "compile", model] + flags + ["-o", exe] + external)
        if external and not os.path.exists(exe + ".safetensors"):
            sys.exit("FAIL: --weights-external wrote no " + exe + ".safetensors")
        # The executable needs none of the compiler's shared libraries.
        _, libraries, _ = run(["ldd", exe])
        for forbidden in ("LLVM", "MLIR", "protobuf", "cjson", "edit"):
            if forbidden.lower() in libraries.lower():
                sys.exit(f"FAIL: the executable links {forbidden}:\n{libraries}")
        run([exe] + bindings)
        return
    if args.backend == "artifact":
        artifact = os.path.join(args.work, "model.attnx")
        run([args.attnc, "compile", model] + flags + ["--emit", "artifact", "-o", artifact])
        run([args.attnc, "run", artifact] + bindings)
        return
    sys.exit("unknown backend " + args.backend)


def compare(out, ref, rtol):
    run([PYTHON, os.path.join(REF, "compare.py"), out, ref, "--rtol-l2", str(rtol)])


def strip_prefix(checkpoint, prefix, work):
    sys.path.insert(0, REF)
    import safetensors_np
    tensors = safetensors_np.load(checkpoint)
    renamed = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in tensors.items()}
    out = os.path.join(work, "base")
    os.makedirs(out)
    safetensors_np.save(os.path.join(out, "model.safetensors"), renamed)
    shutil.copy(os.path.join(checkpoint, "config.json"), out)
    return out


def hf(args):
    ids = os.path.join(args.checkpoint, args.input + ".npy")
    logits = os.path.join(args.checkpoint, "logits.npy")
    if args.strip_prefix:
        args.checkpoint = strip_prefix(args.checkpoint, args.strip_prefix, args.work)
    if args.ids_dtype:
        converted = os.path.join(args.work, "input_ids.npy")
        np.save(converted, np.load(ids).astype(args.ids_dtype))
        ids = converted
    out = os.path.join(args.work, "logits.npy")
    run_model(args, args.model, args.checkpoint, ["-i", args.input + "=" + ids, "-o", "logits=" + out])
    compare(out, logits, RTOL_HF)


def mil(args):
    """ACMIL on random weights and a random bag, against tests/ref/acmil_ref.py."""
    w = os.path.join(args.work, "model.safetensors")
    run([args.attnc, "init-weights", args.model, "--config", args.config, "-o", w, "--seed", "11"])
    with open(args.config) as f:
        d_feat = json.load(f)["D_feat"]
    features = os.path.join(args.work, "features.npy")
    np.save(features, np.random.default_rng(5).standard_normal((53, d_feat)).astype(np.float32))
    out = [os.path.join(args.work, n) for n in ("logits.npy", "attention.npy", "rl.npy", "ra.npy")]
    shutil.copy(args.config, os.path.join(args.work, "config.json"))
    run_model(args, args.model, w, ["-i", "features=" + features, "-o", "logits=" + out[0],
                                    "-o", "attention=" + out[1]])
    run([PYTHON, os.path.join(REF, "acmil_ref.py"), w, args.config, features, out[2], out[3]])
    compare(out[0], out[2], RTOL_REF)
    compare(out[1], out[3], RTOL_REF)


def attnb(args):
    """The model through an .attnb file: `attnc opt --emit attnb`, then `attnc run` of that file
    gives bit for bit the logits `attnc run` of the .attn gives, which match transformers'."""
    ids = os.path.join(args.checkpoint, args.input + ".npy")
    binary = os.path.join(args.work, "model.attnb")
    run([args.attnc, "opt", args.model, "-w", args.checkpoint, "--emit", "attnb", "-o", binary])
    outs = [os.path.join(args.work, name) for name in ("from_attn.npy", "from_attnb.npy")]
    for model, out in zip((args.model, binary), outs):
        run([args.attnc, "run", model, "-w", args.checkpoint, "-i", args.input + "=" + ids,
             "-o", "logits=" + out, "-b", args.backend])
    a, b = np.load(outs[0]), np.load(outs[1])
    if a.shape != b.shape or not np.array_equal(a, b):
        sys.exit(f"FAIL: the .attnb gives other logits than the .attn: {a.shape} vs {b.shape}, "
                 f"max difference {np.max(np.abs(a - b)) if a.shape == b.shape else 'n/a'}")
    compare(outs[1], os.path.join(args.checkpoint, "logits.npy"), RTOL_HF)


def random_ids(vocab, shape, seed):
    return np.random.default_rng(seed).integers(0, vocab, size=shape, dtype=np.int64)


def random(args):
    w = os.path.join(args.work, "W")
    os.makedirs(w, exist_ok=True)
    run([args.attnc, "init-weights", args.model, "--config", args.config, "-o",
         os.path.join(w, "model.safetensors"), "--seed", "7"])
    shutil.copy(args.config, os.path.join(w, "config.json"))
    with open(args.config) as f:
        vocab = json.load(f)["vocab_size"]
    ids = os.path.join(args.work, "ids.npy")
    np.save(ids, random_ids(vocab, (2, 9), 3))
    out, ref = os.path.join(args.work, "logits.npy"), os.path.join(args.work, "ref.npy")
    run_model(args, args.model, w, ["-i", "input_ids=" + ids, "-o", "logits=" + out])
    run([PYTHON, os.path.join(REF, "run_ref.py"), args.arch, w, ids, ref])
    compare(out, ref, RTOL_REF)


def demo(args):
    a, b = os.path.join(args.work, "a.safetensors"), os.path.join(args.work, "b.safetensors")
    run([args.attnc, "init-weights", args.model, "-o", a, "--seed", "42"])
    run([args.attnc, "init-weights", args.model, "-o", b, "--seed", "42"])
    if not filecmp.cmp(a, b, shallow=False):
        sys.exit("FAIL: init-weights is not deterministic")
    ids = os.path.join(args.work, "ids.npy")
    np.save(ids, (np.arange(32, dtype=np.int64) * 7 % 256).reshape(2, 16))
    out = os.path.join(args.work, "logits.npy")
    _, stdout, _ = run([args.attnc, "run", args.model, "-w", a, "-i", "input_ids=" + ids,
                        "-o", "logits=" + out])
    logits = np.load(out)
    if logits.shape != (2, 16, 256) or not np.all(np.isfinite(logits)):
        sys.exit(f"FAIL: logits {logits.shape}, finite: {np.all(np.isfinite(logits))}")
    # Without -o the output is summarised on stdout.
    _, stdout, _ = run([args.attnc, "run", args.model, "-w", a, "-i", "input_ids=" + ids])
    if "logits: f32[2, 16, 256]" not in stdout or "mean" not in stdout:
        sys.exit("FAIL: no summary of the logits on stdout")


def stats(args):
    """The memory plan's quality from `attnc opt --stats`: planned peak against live set."""
    cmd = [args.attnc, "opt", args.model, "--config", args.config, "-p", args.passes, "--stats"]
    for binding in args.D:
        cmd += ["-D", binding]
    _, stdout, _ = run(cmd)
    fields = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            fields[name.strip()] = value.split(" ")[0]
    try:
        kernels = int(fields["kernels"])
        buffers = int(fields["buffers"])
        planned = int(fields["planned peak bytes"])
        live = int(fields["largest live set bytes"])
    except (KeyError, ValueError):
        sys.exit("FAIL: the report lacks kernel, buffer or byte counts (is every symbol bound?)")
    if kernels <= 0 or buffers <= 0 or live <= 0:
        sys.exit(f"FAIL: {kernels} kernels, {buffers} buffers, largest live set {live} bytes")
    ratio = planned / live
    print(f"planned {planned} / largest live set {live} bytes = {ratio:.3f}")
    if ratio > args.max_ratio:
        sys.exit(f"FAIL: planned / largest live set {ratio:.3f} > {args.max_ratio}")


def make_fixture(work, name):
    """Files the `fails` cases refer to as @NAME."""
    path = os.path.join(work, name)
    if name == "bad.npy":
        with open(path, "wb") as f:
            f.write(b"\x93NUMPY\x01\x00this is not a header")
    elif name == "ids.npy":
        np.save(path, np.zeros((1, 4), dtype=np.int64))
    elif name == "float_ids.npy":
        np.save(path, np.zeros((1, 4), dtype=np.float32))
    elif name == "mismatch":
        # The gpt2-tiny fixture's tensors with the smaller config of models/configs.
        os.makedirs(path, exist_ok=True)
        shutil.copy(os.path.join(ROOT, "tests/data/hf/gpt2-tiny/model.safetensors"), path)
        shutil.copy(os.path.join(ROOT, "models/configs/gpt2-tiny.json"),
                    os.path.join(path, "config.json"))
    elif name == "model.attnb":
        with open(path, "wb") as f:
            f.write(b"graph tiny() -> () {}\n")  # text, not a protobuf message
    elif name in ("model.onnx", "model.pt"):
        open(path, "wb").close()
    elif name == "colliding.attn":
        # Inputs whose C fields collide in a static library's header: x's dims are x_dims.
        with open(path, "w") as f:
            f.write("graph g(x: f32[N], x_dims: f32[N]) -> (y: f32[N]) {\n"
                    "  return add(x, x_dims)\n}\n")
    elif name == "keyword.attn":
        # An output named like a C keyword, and one named like the generated run's locals.
        with open(path, "w") as f:
            f.write("graph g(x: f32[N]) -> (int: f32[N], status: f32[N]) {\n"
                    "  return exp(x), neg(x)\n}\n")
    elif name == "bogus.attnx":
        np.save(path + ".npy", np.zeros(3))
        os.replace(path + ".npy", path)
    elif name.startswith("out/"):
        # An output path in a directory of its own.
        os.makedirs(os.path.dirname(path), exist_ok=True)
    else:
        sys.exit(f"model_test.py: no fixture named {name}")
    return path


def fails(args):
    cmd = [args.attnc]
    for a in args.args:
        if "@" in a:
            head, _, name = a.partition("@")
            a = head + make_fixture(args.work, name)
        cmd.append(a)
    status, _, stderr = run(cmd, expect=None)
    if status != args.exit:
        sys.exit(f"FAIL: exit status {status}, expected {args.exit}")
    for piece in args.substrings.split("|"):
        if piece not in stderr:
            sys.exit(f"FAIL: stderr lacks {piece!r}")


def bench(args):
    """attnc bench: a per-kernel table, then median_ms=<number> as the last line."""
    ids = os.path.join(args.checkpoint, "input_ids.npy")
    _, stdout, _ = run([args.attnc, "bench", args.model, "-w", args.checkpoint,
                        "-i", "input_ids=" + ids, "-b", args.backend, "--iters", "3",
                        "--warmup", "1"])
    lines = stdout.strip().splitlines()
    last = lines[-1]
    if not re.fullmatch(r"median_ms=[0-9]+\.[0-9]+", last):
        sys.exit(f"FAIL: the last line is {last!r}")
    if float(last.split("=")[1]) <= 0:
        sys.exit(f"FAIL: {last}")
    if args.backend == "cpu":
        for want in ("kernel", " gemm ", "attn_gemm_f32_", "compilation"):
            if not any(want in line for line in lines):
                sys.exit(f"FAIL: no line has {want!r}:\n{stdout}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnc", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--backend", default="interp",
                    help="interp, cpu (attnc run -b), exe, exe-external or artifact (attnc compile; "
                         "hf, mil, random)")
    sub = ap.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("hf")
    p.add_argument("model")
    p.add_argument("checkpoint")
    p.add_argument("--ids-dtype")
    p.add_argument("--strip-prefix")
    p.add_argument("--input", default="input_ids", help="the graph input the fixture feeds")
    p = sub.add_parser("attnb")
    p.add_argument("model")
    p.add_argument("checkpoint")
    p.add_argument("--input", default="input_ids", help="the graph input the fixture feeds")
    p = sub.add_parser("mil")
    p.add_argument("model")
    p.add_argument("config")
    p = sub.add_parser("random")
    p.add_argument("model")
    p.add_argument("arch")
    p.add_argument("config")
    p = sub.add_parser("bench")
    p.add_argument("model")
    p.add_argument("checkpoint")
    p = sub.add_parser("demo")
    p.add_argument("model")
    p = sub.add_parser("stats")
    p.add_argument("model")
    p.add_argument("config")
    p.add_argument("--max-ratio", type=float, required=True)
    p.add_argument("--passes", default="default")
    p.add_argument("-D", action="append", default=[], metavar="NAME=VALUE")
    p = sub.add_parser("fails")
    p.add_argument("exit", type=int)
    p.add_argument("substrings")
    p.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.kind == "fails" and args.args and args.args[0] == "--":
        args.args = args.args[1:]
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    {"hf": hf, "attnb": attnb, "mil": mil, "random": random, "demo": demo, "stats": stats,
     "bench": bench, "fails": fails}[args.kind](args)
    print("PASS")


if __name__ == "__main__":
    main()
