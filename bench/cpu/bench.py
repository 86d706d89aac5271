#!/usr/bin/python3
"""attnc side by side with ONNX Runtime, torch and OpenBLAS on this CPU (bench/cpu/run.sh runs it).

Every case is measured INTERLEAVED: for each shape, each peer is calibrated once (enough runs per
sample to last --min-sample-s), then the driver takes one sample of every peer per round, the
order rotating each round, for --rounds rounds, so that load from elsewhere hits all peers alike.
A peer's time is the best and the median over its samples; a sample is the median of its runs.
A 2-thread FMA probe (peak --canary) at the start of every round shows how much CPU there was.

attnc is run as `attnc bench MODEL -b cpu ... --iters K --warmup W` (its last line is
median_ms=...); OpenBLAS as the sgemm_openblas program, which prints the same lines; ONNX Runtime
and torch live in persistent workers (worker_ort.js, worker_torch.py). A peer whose run is
predicted (from its previous shape, scaled by FLOP) to last more than --cap-s is not run for
that shape, and the report says so.

Writes RESULTS/cpu-YYYY-MM-DD.md and .json (a second run the same day overwrites them).
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
H = 8
GPT_T = 512
LOGITS_TOLERANCE = 1e-4  # relative L2, attnc logits against ONNX Runtime's


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- peers


class Unavailable(Exception):
    """A peer cannot run a case; the message says why and goes into the report."""


class Worker:
    """A persistent peer process speaking one JSON object per line."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, cwd=HERE)

    def call(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited")
        reply = json.loads(line)
        if "error" in reply:
            raise Unavailable(f"{self.name}: {reply['error'].splitlines()[0][:300]}")
        return reply

    def close(self):
        try:
            self.call(cmd="quit")
            self.proc.wait(timeout=30)
        except Exception:  # already gone: nothing to close
            self.proc.kill()


class WorkerPeer:
    def __init__(self, worker, name, load_msg, capped=False):
        self.worker, self.name, self.load_msg = worker, name, load_msg
        self.capped = capped
        self.info = {}

    def setup(self):
        self.info = self.worker.call(cmd="load", name=self.name, **self.load_msg)

    def sample(self, iters, warmup):
        return statistics.median(self.worker.call(cmd="run", name=self.name, iters=iters, warmup=warmup)["t"])


def parse_summary(text):
    """The median_ms line of attnc bench (or of sgemm_openblas), in seconds, and the kernel table."""
    lines = text.strip().splitlines()
    m = re.fullmatch(r"median_ms=([0-9.eE+-]+)", lines[-1].strip()) if lines else None
    if not m:
        raise Unavailable("no median_ms line in: " + " | ".join(lines[-3:]))
    impls = {}
    for line in lines:
        k = re.match(r"k\d+\s+(\S+)\s+(\S+)\s+([0-9.]+)\s", line)
        if k:
            key = f"{k.group(1)}:{k.group(2)}"
            impls[key] = impls.get(key, 0) + 1
    return float(m.group(1)) * 1e-3, impls


class ProcessPeer:
    """A program run once per sample that prints median_ms=...: attnc bench, sgemm_openblas."""

    def __init__(self, name, argv, capped=False, iters_flag="--iters", warmup_flag="--warmup"):
        self.name, self.argv, self.capped = name, argv, capped
        self.iters_flag, self.warmup_flag = iters_flag, warmup_flag
        self.info = {}

    def setup(self):
        pass

    def sample(self, iters, warmup):
        argv = self.argv + [self.iters_flag, str(iters), self.warmup_flag, str(warmup)]
        r = subprocess.run(argv, capture_output=True, text=True, cwd=HERE)
        if r.returncode != 0:
            msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise Unavailable(f"{self.name} exited {r.returncode}: {msg[0][:300] if msg else ''}")
        t, impls = parse_summary(r.stdout)
        if impls:
            self.info["kernels"] = impls
        return t


def canary(paths):
    r = subprocess.run([paths.peak, "--canary"], capture_output=True, text=True)
    return float(r.stdout.strip()) if r.returncode == 0 else None


def measure(peers, flop, args, paths, predicted, series=""):
    """Interleaved measurement of `peers` (dict key -> peer) on one shape. `predicted`:
    (key, series) -> (seconds, flop) of the peer's last shape in that series, updated here; a
    peer with `capped` set is not run when that predicts a run longer than --cap-s (the peers
    attnc is compared with always run). Returns key -> result dict, and the canary figures."""
    out, live, iters = {}, [], {}
    for key, peer in peers.items():
        last = predicted.get((key, series))
        est = last[0] * flop / last[1] if last else 0.0
        if getattr(peer, "capped", False) and est > args.cap_s:
            out[key] = {"status": f"not run: one run predicted {est:.1f} s from the previous shape "
                                  f"(limit --cap-s {args.cap_s:g})"}
            continue
        try:
            peer.setup()
            t = peer.sample(1, 1)
        except Unavailable as e:
            out[key] = {"status": f"not run: {e}"}
            continue
        predicted[(key, series)] = (t, flop)
        iters[key] = max(1, min(args.max_iters, math.ceil(args.min_sample_s / max(t, 1e-6))))
        live.append(key)
    samples = {key: [] for key in live}
    canaries = []
    for r in range(args.rounds):
        canaries.append(canary(paths))
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for key in order:
            if key in out:
                continue
            try:
                samples[key].append(peers[key].sample(iters[key], 1 if iters[key] > 1 else 0))
            except Unavailable as e:
                out[key] = {"status": f"failed: {e}"}
    for key in live:
        if key in out:
            continue
        s = sorted(samples[key])
        med = statistics.median(s)
        out[key] = {"status": "ok", "best_s": s[0], "median_s": med, "samples_s": s, "runs_per_sample": iters[key],
                    "gflops_median": flop / med * 1e-9, "gflops_best": flop / s[0] * 1e-9, **peers[key].info}
    return out, canaries


# ---------------------------------------------------------------- cases


def attention_shapes(args):
    if args.quick:
        return [(512, 64), (1024, 64), (2048, 128)]
    return [(t, d) for t in (512, 1024, 2048, 4096) for d in (64, 128)]


def write_inputs(work, t, d):
    """q, k, v [1, H, T, D] (and their [1, T, H*D] layout for MultiHeadAttention) as .npy."""
    base = os.path.join(work, "inputs", f"attn_T{t}_D{d}")
    os.makedirs(base, exist_ok=True)
    paths = {n: os.path.join(base, f"{n}.npy") for n in "qkv"}
    flat = {n: os.path.join(base, f"{n}_btE.npy") for n in "qkv"}
    if not all(os.path.exists(p) for p in list(paths.values()) + list(flat.values())):
        rng = np.random.default_rng(t * 1000 + d)
        for n in "qkv":
            x = rng.standard_normal((1, H, t, d), dtype=np.float32)
            np.save(paths[n], x)
            np.save(flat[n], np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(1, t, H * d)))
    return paths, flat


def onnx_model(work, variant, t, d, causal):
    import onnx_models

    path = os.path.join(work, "onnx", f"{variant}_T{t}_D{d}_c{int(causal)}.onnx")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        onnx_models.VARIANTS[variant][0](t, d, causal, path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def attnc_argv(paths, model, inputs, extra=()):
    argv = [paths.attnc, "bench", model, "-b", "cpu"]
    for name, p in inputs.items():
        argv += ["-i", f"{name}={p}"]
    return argv + list(extra)


def reference_attention(qkv, causal):
    """softmax(q kᵀ / sqrt(D) [+ causal mask]) v in float64, one head at a time."""
    q, k, v = (np.load(qkv[n])[0].astype(np.float64) for n in "qkv")
    out = np.empty_like(q)
    t = q.shape[1]
    for h in range(q.shape[0]):
        s = q[h] @ k[h].T / math.sqrt(q.shape[2])
        if causal:
            s[np.triu_indices(t, 1)] = -np.inf
        s = np.exp(s - s.max(axis=1, keepdims=True))
        out[h] = (s / s.sum(axis=1, keepdims=True)) @ v[h]
    return out[None]


def check_attnc_output(args, paths, model, qkv, causal, reference):
    """Relative L2 of attnc's output (attnc run -b cpu) against the float64 reference."""
    out = os.path.join(args.work, "attnc_o.npy")
    argv = attnc_argv(paths, model, qkv)
    argv[1] = "run"
    r = subprocess.run(argv + ["-o", f"o={out}"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    o = np.load(out)
    if o.dtype == np.uint16:  # bf16 is written as its raw bits (NumPy has no bf16)
        o = (o.astype(np.uint32) << 16).view(np.float32)
    return rel_l2(o.astype(np.float32), reference)


def run_attention(args, paths, workers, results):
    predicted = {}
    rows = []
    for t, d in attention_shapes(args):
        qkv, flat = write_inputs(args.work, t, d)
        for causal in (False, True):
            flop = 4.0 * H * t * t * d * (0.5 if causal else 1.0)
            suffix = "_causal" if causal else ""
            peers = {
                "attnc": ProcessPeer("attnc", attnc_argv(paths, os.path.join(HERE, "models", f"attention{suffix}.attn"), qkv),
                                     capped=True),
                "attnc_bf16": ProcessPeer("attnc bf16", attnc_argv(
                    paths, os.path.join(HERE, "models", f"attention{suffix}_bf16.attn"), qkv), capped=True),
                "torch": WorkerPeer(workers["torch"], "attn", {"kind": "attention", "inputs": qkv, "causal": causal}),
                "torch_bf16": WorkerPeer(workers["torch"], "attn_bf16",
                                         {"kind": "attention", "inputs": qkv, "causal": causal, "dtype": "bf16"},
                                         capped=True),
            }
            for variant in ("graph", "att23", "mha"):
                layout = qkv if variant != "mha" else flat
                model = onnx_model(args.work, variant, t, d, causal)
                peers["ort_" + variant] = WorkerPeer(workers["ort"], variant,
                                                     {"model": model, "opt": "all", "inputs": layout})
            if args.skip_bf16:
                peers.pop("attnc_bf16")
                peers.pop("torch_bf16")
            start = time.time()
            res, can = measure(peers, flop, args, paths, predicted, "causal" if causal else "full")
            workers["ort"].call(cmd="unload")
            workers["torch"].call(cmd="unload")
            row = {"T": t, "D": d, "causal": causal, "flop": flop, "peers": res, "canary_gflops": can,
                   "wall_s": time.time() - start}
            # attnc's output against a float64 reference, where it ran (not timed; T <= 2048 to
            # keep the reference cheap)
            if t <= 2048 and any(res.get(k, {}).get("status") == "ok" for k in ("attnc", "attnc_bf16")):
                ref = reference_attention(qkv, causal)
                for key in ("attnc", "attnc_bf16"):
                    if res.get(key, {}).get("status") == "ok":
                        res[key]["rel_l2_vs_reference"] = check_attnc_output(
                            args, paths, peers[key].argv[2], qkv, causal, ref)
            rows.append(row)
            log(f"attention T={t} D={d} causal={causal}: " + ", ".join(
                f"{k} {v['median_s'] * 1e3:.2f} ms" if v["status"] == "ok" else f"{k} -" for k, v in res.items())
                + f" ({row['wall_s']:.0f} s)")
            results["attention"] = rows
            save_json(args, results)


def run_gemm(args, paths, workers, results):
    predicted, rows = {}, []
    for n in (1024, 2048) if args.quick else (1024, 2048, 4096):
        base = os.path.join(args.work, "inputs", f"gemm_{n}")
        os.makedirs(base, exist_ok=True)
        ab = {x: os.path.join(base, f"{x}.npy") for x in "ab"}
        if not all(os.path.exists(p) for p in ab.values()):
            rng = np.random.default_rng(n)
            for p in ab.values():
                np.save(p, rng.standard_normal((n, n), dtype=np.float32))
        flop = 2.0 * n * n * n
        peers = {"attnc": ProcessPeer("attnc", attnc_argv(paths, os.path.join(HERE, "models", "matmul.attn"), ab),
                                      capped=True),
                 "openblas": ProcessPeer("openblas", [paths.sgemm, str(n), "--threads", "2"]),
                 "torch": WorkerPeer(workers["torch"], "mm", {"kind": "matmul", "inputs": ab})}
        start = time.time()
        res, can = measure(peers, flop, args, paths, predicted)
        workers["torch"].call(cmd="unload")
        rows.append({"N": n, "flop": flop, "peers": res, "canary_gflops": can, "wall_s": time.time() - start})
        log(f"gemm N={n}: " + ", ".join(f"{k} {v.get('gflops_median', 0):.1f} GFLOP/s" for k, v in res.items()))
        results["gemm"] = rows
        save_json(args, results)


def gpt2_flop(cfg, t):
    d, ff, layers, vocab = cfg["n_embd"], cfg.get("n_inner") or 4 * cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"]
    linear = 2.0 * t * (3 * d * d + d * d + 2 * d * ff) * layers
    attention = 4.0 * t * t * d * layers * 0.5
    return linear + attention + 2.0 * t * d * vocab


def run_gpt2(args, paths, workers, results):
    cfg_path = os.path.join(HERE, "gpt2-bench.json")
    cfg = json.load(open(cfg_path))
    base = os.path.join(args.work, "gpt2")
    os.makedirs(base, exist_ok=True)
    weights = os.path.join(base, "gpt2-bench.safetensors")
    ids = os.path.join(base, f"input_ids_{GPT_T}.npy")
    onnx_path = os.path.join(base, f"gpt2-bench-T{GPT_T}.onnx")
    model = os.path.join(ROOT, "models", "gpt2.attn")
    entry = {"T": GPT_T, "config": cfg, "flop": gpt2_flop(cfg, GPT_T)}
    if not os.path.exists(weights):
        subprocess.run([paths.attnc, "init-weights", model, "--config", cfg_path, "-o", weights], check=True)
    if not os.path.exists(ids):
        np.save(ids, np.random.default_rng(7).integers(0, cfg["vocab_size"], (1, GPT_T), dtype=np.int64))
    r = subprocess.run([sys.executable, os.path.join(HERE, "gpt2_torch.py"), "--weights", weights, "--config", cfg_path,
                        "--ids", ids, "--export", onnx_path + ".tmp"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gpt2 export failed: " + r.stderr[-2000:])
    os.replace(onnx_path + ".tmp", onnx_path)
    entry["torch_vs_reference_rel_l2"] = json.loads(r.stdout.strip().splitlines()[-1])["torch_vs_reference_rel_l2"]

    attnc_inputs = {"input_ids": ids}
    extra = ["-w", weights, "--config", cfg_path]
    peers = {"attnc": ProcessPeer("attnc", attnc_argv(paths, model, attnc_inputs, extra)),
             "ort": WorkerPeer(workers["ort"], "gpt2", {"model": onnx_path, "opt": "all", "inputs": attnc_inputs}),
             "torch": WorkerPeer(workers["torch"], "gpt2", {"kind": "gpt2", "weights": weights, "config": cfg_path,
                                                            "inputs": attnc_inputs})}
    res, can = measure(peers, entry["flop"], args, paths, {})
    entry.update({"peers": res, "canary_gflops": can})
    # Logits agreement, attnc against ONNX Runtime (and torch), once.
    shape = (1, GPT_T, cfg["vocab_size"])
    try:
        ort_raw, torch_raw = os.path.join(base, "logits_ort.f32"), os.path.join(base, "logits_torch.f32")
        workers["ort"].call(cmd="save", name="gpt2", output="logits", path=ort_raw)
        workers["torch"].call(cmd="save", name="gpt2", path=torch_raw)
        ort_logits = np.fromfile(ort_raw, dtype=np.float32).reshape(shape)
        torch_logits = np.fromfile(torch_raw, dtype=np.float32).reshape(shape)
        entry["ort_vs_torch_rel_l2"] = rel_l2(ort_logits, torch_logits)
        attnc_out = os.path.join(base, "logits_attnc.npy")
        r = subprocess.run([paths.attnc, "run", model, "-b", "cpu", "-i", f"input_ids={ids}", *extra,
                            "-o", f"logits={attnc_out}"], capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable("attnc run: " + (r.stderr.strip().splitlines() or [""])[0][:300])
        attnc_logits = np.load(attnc_out).astype(np.float32).reshape(shape)
        entry["attnc_vs_ort_rel_l2"] = rel_l2(attnc_logits, ort_logits)
        entry["attnc_vs_ort_ok"] = entry["attnc_vs_ort_rel_l2"] <= LOGITS_TOLERANCE
    except (Unavailable, OSError, ValueError) as e:
        entry["logits_check_error"] = str(e)
    workers["ort"].call(cmd="unload")
    workers["torch"].call(cmd="unload")
    results["gpt2"] = entry
    log("gpt2: " + ", ".join(f"{k} {GPT_T / v['median_s']:.0f} tokens/s" for k, v in res.items() if v["status"] == "ok")
        + f"; attnc vs ORT rel L2 {entry.get('attnc_vs_ort_rel_l2', 'n/a')}")
    save_json(args, results)


def rel_l2(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------- machine and report


def machine_info(paths):
    cpuinfo = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    flags = set(re.search(r"flags\s*:\s*(.*)", cpuinfo).group(1).split())
    info = {"cpu": model.group(1).strip() if model else platform.processor(), "cores": os.cpu_count(),
            "avx2": "avx2" in flags, "fma": "fma" in flags, "avx512f": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "kernel": platform.release()}
    try:
        info["lscpu_model"] = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.*)", info.pop("lscpu_model"))
        info["cpu"] = m.group(1).strip() if m else info["cpu"]
    except OSError:
        pass
    info["peak"] = measure_peak(paths)
    return info


def measure_peak(paths):
    r = subprocess.run([paths.peak, "9", "0.3"], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def settle_peak(results):
    """The ceiling: the best repetition of peak.c at the start and at the end of the run, or the
    best 2-thread canary in between when that is higher; load from elsewhere only ever lowers
    these figures, so the highest is the closest to the machine's own."""
    m = results["machine"]
    runs = m["peak"] + m.get("peak_end", [])
    two = min(2, os.cpu_count())
    canaries = [c for case in ("attention", "gemm") for row in results.get(case, []) for c in row["canary_gflops"] if c]
    canaries += [c for c in results.get("gpt2", {}).get("canary_gflops", []) if c]
    m["peak_2core_gflops"] = max([p["best_gflops"] for p in runs if p["threads"] == two] + canaries)
    m["peak_1core_gflops"] = max(p["best_gflops"] for p in runs if p["threads"] == 1)
    m["best_canary_gflops"] = max(canaries) if canaries else None


def versions(paths, workers):
    v = {}
    r = subprocess.run([paths.attnc, "--version"], capture_output=True, text=True)
    v["attnc"] = (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if r.returncode == 0 else "unknown"
    try:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
        v["attnc_commit"] = git.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        pass
    v["onnxruntime"] = workers["ort"].call(cmd="info")
    v["torch"] = workers["torch"].call(cmd="info")
    v["torch"]["capability"] = [c.strip(" -") for c in v["torch"]["capability"]]
    r = subprocess.run([paths.sgemm, "64", "--iters", "1", "--warmup", "0"], capture_output=True, text=True)
    v["openblas"] = r.stdout.splitlines()[0].split(",")[0].replace("openblas ", "") if r.returncode == 0 else "?"
    v["python"] = platform.python_version()
    v["gcc"] = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    return v


def save_json(args, results):
    with open(args.json_path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(args.json_path + ".tmp", args.json_path)


def fmt_ms(p):
    return f"{p['median_s'] * 1e3:.2f} ({p['best_s'] * 1e3:.2f})"


def ratio(a, b):
    """Speed of attnc relative to a peer: peer time / attnc time (> 1: attnc is faster)."""
    if a.get("status") != "ok" or b.get("status") != "ok":
        return "-"
    return f"{b['median_s'] / a['median_s']:.2f}"


def status_cell(p):
    return p.get("status", "not run").replace("|", "/")


def err_of(p):
    e = p.get("rel_l2_vs_reference")
    return f"{e:.1e}" if e is not None else "-"


def impl_of(p):
    kernels = p.get("kernels") or {}
    return ", ".join(f"{k.split(':')[1]}" for k in sorted(kernels)) or "-"


def write_report(args, results):
    m, peak = results["machine"], results["machine"]["peak_2core_gflops"]
    v = results["versions"]
    pct = lambda p: f"{100 * p['gflops_median'] / peak:.0f} %" if p.get("status") == "ok" else "-"  # noqa: E731
    gf = lambda p: f"{p['gflops_median']:.1f}" if p.get("status") == "ok" else "-"  # noqa: E731
    L = [f"# attnc on the CPU, side by side — {results['date']}", "",
         f"Generated by `bench/cpu/run.sh{' --quick' if args.quick else ''}` "
         f"({results['wall_s'] / 60:.1f} min; {args.rounds} interleaved rounds per case, 2 threads everywhere). "
         "Times are the median sample in ms with the best in brackets; GFLOP/s and % of peak use the median. "
         "Ratios are speed ratios, peer time / attnc time: above 1 attnc is faster.", "",
         "## Machine", "",
         f"- CPU: {m['cpu']}, {m['cores']} cores; AVX2 {'yes' if m['avx2'] else 'no'}, FMA {'yes' if m['fma'] else 'no'}, "
         f"AVX-512 {'yes' if m['avx512f'] else 'no'}, AVX-512 BF16 {'yes' if m['avx512_bf16'] else 'no'}",
         f"- measured f32 FMA peak (bench/cpu/peak.c, the best repetition at the start or the end of the run, or the best "
         f"2-thread canary): **{m['peak_1core_gflops']:.1f} GFLOP/s on 1 core, {peak:.1f} on 2** — the \"% peak\" "
         "columns use the 2-core figure"]
    for when, runs in (("start", m["peak"]), ("end", m.get("peak_end", []))):
        for p in runs:
            L.append(f"  - {when}: {p['kernel']} × {p['threads']} thread(s): best {p['best_gflops']:.1f}, "
                     f"median {p['median_gflops']:.1f}, worst {p['worst_gflops']:.1f} GFLOP/s")
    L.append(f"  - best canary (50 ms, 2 threads, once per round): {m.get('best_canary_gflops') or 0:.1f} GFLOP/s")
    L += [f"- load average at start {results['loadavg_start']}, at end {results.get('loadavg_end', '?')}", "",
          "## Versions", "",
          f"- attnc: {v['attnc']} ({v.get('attnc_commit', '?')}), Release build, `-b cpu`",
          f"- ONNX Runtime: onnxruntime-node {v['onnxruntime']['onnxruntime'].get('node', '?')} (node {v['onnxruntime']['node']}), "
          f"CPU EP, {v['onnxruntime']['threads']} intra-op threads, optimisation level all",
          f"- torch: {v['torch']['torch']}, numpy {v['torch']['numpy']}, {v['torch']['threads']} threads, "
          f"{'; '.join(v['torch']['capability'])}, env {v['torch']['env']}",
          f"- OpenBLAS: {v['openblas']}; gcc {v['gcc']}; python {v['python']}", ""]
    if "attention" in results:
        L += ["## Attention, B=1 H=8 f32", "",
              "FLOP = 4·B·H·T²·D, halved for causal. ORT: the fastest of the torch-exported graph, the opset-23 "
              "Attention op and com.microsoft MultiHeadAttention, per shape. torch: matmul-softmax-matmul (1.13 has "
              "no scaled_dot_product_attention). The canary column is the median 2-thread FMA probe per round "
              "(GFLOP/s): far below the peak means the machine was busy. attnc rel L2: attnc's output (`attnc run -b cpu`) "
              "against a float64 NumPy reference, relative L2, checked where T <= 2048.", "",
              "| T | D | mask | attnc ms | GFLOP/s | % peak | attnc kernels | attnc rel L2 | ORT best ms | variant | GFLOP/s "
              "| % peak | torch ms | GFLOP/s | attnc/ORT | attnc/torch | canary |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        notes = []
        for row in results["attention"]:
            ps = row["peers"]
            a, tch = ps.get("attnc", {}), ps.get("torch", {})
            ort = [(k, p) for k, p in ps.items() if k.startswith("ort_") and p.get("status") == "ok"]
            best_key, best = min(ort, key=lambda kp: kp[1]["median_s"]) if ort else ("-", {})
            mask = "causal" if row["causal"] else "none"
            can = [c for c in row["canary_gflops"] if c]
            L.append(f"| {row['T']} | {row['D']} | {mask} | {fmt_ms(a) if a.get('status') == 'ok' else 'not run'} | {gf(a)} "
                     f"| {pct(a)} | {impl_of(a)} | {err_of(a)} | {fmt_ms(best) if best else '-'} | {best_key[4:] if best else '-'} "
                     f"| {gf(best)} | {pct(best)} | {fmt_ms(tch) if tch.get('status') == 'ok' else '-'} | {gf(tch)} "
                     f"| {ratio(a, best)} | {ratio(a, tch)} | {statistics.median(can) if can else 0:.0f} |")
            for k, p in ps.items():
                if p.get("status") != "ok":
                    notes.append(f"- T={row['T']} D={row['D']} {mask}: {k} {status_cell(p)}")
        L += ["", "ORT variants per shape (median ms): " + "; ".join(
            f"T{r['T']}/D{r['D']}/{'c' if r['causal'] else 'n'}: " + ", ".join(
                f"{k[4:]} {p['median_s'] * 1e3:.1f}" for k, p in r["peers"].items()
                if k.startswith("ort_") and p.get("status") == "ok") for r in results["attention"]), ""]
        L += ["## bf16 attention (ratio to attnc f32)", "",
              "attnc with bf16 q, k, v and output (f32 .npy inputs converted on load); torch 1.13 in bf16 "
              f"(this CPU has {'AVX-512 BF16' if m['avx512_bf16'] else 'no AVX-512 BF16: torch emulates bf16 matmuls'}). "
              "Ratio = f32 time / bf16 time (above 1: bf16 is faster).", "",
              "| T | D | mask | attnc bf16 ms | GFLOP/s | attnc bf16 / f32 | attnc kernels | attnc rel L2 | torch bf16 ms "
              "| torch bf16 / attnc f32 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for row in results["attention"]:
            ps = row["peers"]
            a, b, tb = ps.get("attnc", {}), ps.get("attnc_bf16", {}), ps.get("torch_bf16", {})
            L.append(f"| {row['T']} | {row['D']} | {'causal' if row['causal'] else 'none'} "
                     f"| {fmt_ms(b) if b.get('status') == 'ok' else status_cell(b)} | {gf(b)} | {ratio(b, a)} | {impl_of(b)} "
                     f"| {err_of(b)} "
                     f"| {fmt_ms(tb) if tb.get('status') == 'ok' else status_cell(tb)} | {ratio(tb, a)} |")
        if notes:
            L += ["", "Peers not run or failed:", ""] + notes
        L.append("")
    if "gemm" in results:
        L += ["## GEMM, f32, M = N = K, 2 threads", "", "FLOP = 2·N³.", "",
              "| N | attnc ms | GFLOP/s | % peak | OpenBLAS ms | GFLOP/s | % peak | torch ms | GFLOP/s | % peak "
              "| attnc/OpenBLAS | attnc/torch |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in results["gemm"]:
            ps = row["peers"]
            a, ob, tch = ps.get("attnc", {}), ps.get("openblas", {}), ps.get("torch", {})
            cell = lambda p: fmt_ms(p) if p.get("status") == "ok" else status_cell(p)  # noqa: E731
            L.append(f"| {row['N']} | {cell(a)} | {gf(a)} | {pct(a)} | {cell(ob)} | {gf(ob)} | {pct(ob)} | {cell(tch)} "
                     f"| {gf(tch)} | {pct(tch)} | {ratio(a, ob)} | {ratio(a, tch)} |")
        L.append("")
    if "gpt2" in results:
        g = results["gpt2"]
        c = g["config"]
        L += [f"## GPT-2-shaped model, f32 prefill, batch 1, T {g['T']}", "",
              f"models/gpt2.attn with bench/cpu/gpt2-bench.json: {c['n_layer']} layers, d {c['n_embd']}, {c['n_head']} heads, "
              f"MLP {c['n_inner']}, vocab {c['vocab_size']}, logits for all {g['T']} positions; weights from "
              f"`attnc init-weights`. ORT runs the ONNX export of bench/cpu/gpt2_torch.py (same weights); torch runs "
              f"that module. FLOP per prefill {g['flop'] / 1e9:.2f} G (causal attention counted half); the LM head over "
              f"all positions is {2 * g['T'] * c['n_embd'] * c['vocab_size'] / g['flop']:.0%} of it (figures for a "
              "prefill that computes the last position's logits only are not comparable).", "",
              "| peer | ms | tokens/s | GFLOP/s | % peak | attnc/peer |", "|---|---|---|---|---|---|"]
        a = g["peers"].get("attnc", {})
        for k, p in g["peers"].items():
            if p.get("status") == "ok":
                L.append(f"| {k} | {fmt_ms(p)} | {g['T'] / p['median_s']:.0f} | {gf(p)} | {pct(p)} "
                         f"| {ratio(a, p) if k != 'attnc' else '1'} |")
            else:
                L.append(f"| {k} | {status_cell(p)} | - | - | - | - |")
        L += ["", f"- torch module vs tests/ref/gpt2_ref.py (float64 NumPy): relative L2 {g['torch_vs_reference_rel_l2']:.2e}"]
        if "attnc_vs_ort_rel_l2" in g:
            L.append(f"- attnc vs ONNX Runtime logits: relative L2 **{g['attnc_vs_ort_rel_l2']:.2e}** "
                     f"({'within' if g['attnc_vs_ort_ok'] else 'ABOVE'} the 1e-4 bound)")
        if "ort_vs_torch_rel_l2" in g:
            L.append(f"- ONNX Runtime vs torch logits: relative L2 {g['ort_vs_torch_rel_l2']:.2e}")
        if "logits_check_error" in g:
            L.append(f"- logits check not done: {g['logits_check_error']}")
        L.append("")
    with open(args.md_path, "w") as f:
        f.write("\n".join(L))


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attnc", required=True, help="the attnc binary (a Release build)")
    ap.add_argument("--peak", required=True, help="the peak program (peak.c)")
    ap.add_argument("--sgemm", required=True, help="the sgemm_openblas program")
    ap.add_argument("--work", default=os.path.join(HERE, "work"), help="generated inputs, models, weights")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--quick", action="store_true", help="fewer shapes and rounds")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per case (default 5, quick 3)")
    ap.add_argument("--min-sample-s", type=float, help="shortest sample (default 0.25 s, quick 0.1 s)")
    ap.add_argument("--max-iters", type=int, default=50, help="most runs in one sample")
    ap.add_argument("--cap-s", type=float, help="skip a peer whose single run is predicted longer (default 4 s, quick 1.5 s)")
    ap.add_argument("--cases", default="attention,gemm,gpt2")
    ap.add_argument("--skip-bf16", action="store_true")
    args = ap.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.min_sample_s = args.min_sample_s or (0.1 if args.quick else 0.25)
    args.cap_s = args.cap_s or (1.5 if args.quick else 4.0)
    paths = argparse.Namespace(attnc=os.path.abspath(args.attnc), peak=os.path.abspath(args.peak),
                               sgemm=os.path.abspath(args.sgemm))
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    date = datetime.date.today().isoformat()
    args.md_path = os.path.join(args.results, f"cpu-{date}.md")
    args.json_path = os.path.join(args.results, f"cpu-{date}.json")
    sys.path.insert(0, HERE)

    start = time.time()
    results = {"date": date, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
               "rounds": args.rounds, "min_sample_s": args.min_sample_s, "cap_s": args.cap_s,
               "loadavg_start": open("/proc/loadavg").read().split()[0]}
    log("measuring the FMA peak ...")
    results["machine"] = machine_info(paths)
    settle_peak(results)
    log(f"peak: {results['machine']['peak_1core_gflops']:.1f} GFLOP/s 1 core, "
        f"{results['machine']['peak_2core_gflops']:.1f} 2 cores")
    capability = "avx512" if results["machine"]["avx512f"] else "avx2"
    workers = {
        "ort": Worker("ort", ["node", os.path.join(HERE, "worker_ort.js")], {"NTHREADS": "2"}),
        # torch 1.13 from Debian is erratic on 2 cores unless OpenMP waits passively.
        "torch": Worker("torch", [sys.executable, os.path.join(HERE, "worker_torch.py")],
                        {"NTHREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "ATEN_CPU_CAPABILITY": capability}),
    }
    try:
        results["versions"] = versions(paths, workers)
        cases = args.cases.split(",")
        for name, fn in (("attention", run_attention), ("gemm", run_gemm), ("gpt2", run_gpt2)):
            if name in cases:
                log(f"case {name} ...")
                fn(args, paths, workers, results)
    finally:
        for w in workers.values():
            w.close()
    results["machine"]["peak_end"] = measure_peak(paths)
    settle_peak(results)
    results["wall_s"] = time.time() - start
    results["loadavg_end"] = open("/proc/loadavg").read().split()[0]
    save_json(args, results)
    write_report(args, results)
    log(f"wrote {args.md_path} and {args.json_path} ({results['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
