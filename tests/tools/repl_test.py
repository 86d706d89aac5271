#!/usr/bin/env python3
"""Tests of `attnc repl`: one ctest case is one invocation of this script.

  repl_test.py --attnc ATTNC --work DIR transcript
      Scripted sessions on stdin (no terminal): a softmax's values against NumPy, an error
      and the recovery after it, the same session on cpu and interp, :save then :load and
      attnc run on the saved file, :print statistics against NumPy, :time, :ir, and the
      commands' failures.
  repl_test.py --attnc ATTNC --work DIR pty
      A session on a pseudo-terminal: the prompt appears, a statement edited with libedit's
      keys (Ctrl-A, Ctrl-F) runs, and the history file is written.

Every attnc run must be free of sanitizer reports, whatever its exit status.
"""
import argparse
import os
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np

RESULT = re.compile(r"^(\w+): (\w+)\[([0-9, ]*)\] \[([^\]]*)\]$", re.M)


def fail(message, output=""):
    sys.stdout.write(output)
    sys.exit("FAIL: " + message)


def check_clean(output):
    for marker in ("Sanitizer", "runtime error:"):
        if marker in output:
            fail("sanitizer report", output)


def session(attnc, lines, args=(), expect=0, cwd=None):
    """Runs `attnc repl ARGS` with LINES on stdin; returns stdout and stderr merged."""
    p = subprocess.run([attnc, "repl", *args], input="\n".join(lines) + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    print(f"$ attnc repl {' '.join(args)} <<EOF\n" + "\n".join(lines) + "\nEOF")
    print(p.stdout)
    check_clean(p.stdout)
    if expect is not None and p.returncode != expect:
        fail(f"exit status {p.returncode}, expected {expect}")
    return p.stdout


def results(output):
    """The last printed result of each name: NAME: TYPE [v, v, ...] lines."""
    values = {}
    for name, _, _, data in RESULT.findall(output):
        values[name] = np.array([float(v) for v in data.split(", ") if v not in ("", "...")])
    return values


def expect_in(output, *pieces):
    for piece in pieces:
        if piece not in output:
            fail(f"missing {piece!r} in the output", output)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
X_LINE = ":input x f32[2, 3] = [1, 2, 3, 0.5, -1, 4]"


def test_softmax_and_recovery(attnc):
    out = session(attnc, [
        X_LINE,
        "y = softmax(x, axis=-1)",
        "z = softmx(y)",            # an unknown op: a diagnostic with its column
        ":print z",                 # the failed statement added nothing
        "w = matmul(x, x)",         # a shape mismatch
        ":nonsense",                # a bad command
        ":load does/not/exist.attn",
        "v = add(y, 1.0)",          # the session goes on
    ], expect=1)
    got = results(out)
    if not np.allclose(got["y"], softmax(X).ravel(), rtol=1e-5, atol=1e-6):
        fail(f"softmax values {got['y']}", out)
    if not np.allclose(got["v"], softmax(X).ravel() + 1, rtol=1e-5, atol=1e-6):
        fail(f"y + 1 values {got['v']}", out)
    expect_in(out, "input:3:5: error: unknown op 'softmx'", "  z = softmx(y)\n      ^\n",
              "error: :print: no tensor named 'z'", "input:5:5: error: matmul",
              "error: unknown command ':nonsense'",
              "does/not/exist.attn: error: cannot read")
    if "z:" in out or "w:" in out:
        fail("a failed statement printed a result", out)
    # Every error prints exactly one line with 'error:'.
    if out.count("error:") != 5:
        fail(f"{out.count('error:')} error lines, expected 5", out)


def test_multiline_def_let_and_repeat(attnc):
    out = session(attnc, [
        X_LINE,
        "let scale = 0.5",
        "def twice(a) {",
        "  b = mul(a, 2.0)",
        "  return b",
        "}",
        "h = twice(x)",
        "repeat i in 0..3 {",
        "  h = mul(h, scale)",
        "}",
        "first, rest = split(x, axis=1, sizes=[1, 2])",
    ])
    got = results(out)
    if not np.allclose(got["h"], (X * 2 * 0.125).ravel()):
        fail(f"h {got['h']}", out)
    # Declaring x again re-runs the session on the new data; a failing rebinding changes
    # nothing.
    rebound = session(attnc, [X_LINE, "h = mul(x, 2.0)", ":input x f32[2, 3] = ones",
                              ":input x f32[2, 3] = [1, 2]", ":print h"], expect=1)
    expect_in(rebound, "h: f32[2, 3] [2, 2, 2, 2, 2, 2]", "the list has 2 values",
              "  min 2  max 2  mean 2  std 0")
    if not np.allclose(got["first"], X[:, :1].ravel()) or not np.allclose(got["rest"],
                                                                           X[:, 1:].ravel()):
        fail("split results", out)


def test_backends_agree(attnc):
    lines = [X_LINE, "y = softmax(x, axis=-1)", "g = gelu(mul(x, y))", "s = sum(g, axes=[1])"]
    out = session(attnc, lines + [":backend", ":backend interp", ":run", ":backend tpu"],
                  expect=1)
    expect_in(out, "backend cpu\n", "backend interp\n", "error: :backend: unknown backend 'tpu'")
    cpu_part, interp_part = out.split("backend interp\n", 1)
    cpu, interp = results(cpu_part), results(interp_part)
    for name in ("y", "g", "s"):
        if name not in interp or not np.allclose(cpu[name], interp[name], rtol=1e-5, atol=1e-6):
            fail(f"{name} differs between cpu and interp", out)
    # The interp session from the start gives the same values too.
    direct = results(session(attnc, lines, args=("-b", "interp")))
    for name in ("y", "g", "s"):
        if not np.allclose(direct[name], cpu[name], rtol=1e-5, atol=1e-6):
            fail(f"{name} differs with -b interp", out)


def test_save_load_run(attnc, work):
    saved = os.path.join(work, "session.attn")
    lines = [
        X_LINE,
        ":input r f32[3] = random",
        "let k = 2",
        "def scaled(a) {",
        "  return mul(a, float(k))",
        "}",
        "y = softmax(x, axis=-1)",
        "t = add(scaled(y), r)",
        f":save {saved}",
    ]
    first = results(session(attnc, lines))
    second_out = session(attnc, [f":load {saved}", ":print t", ":run"])
    # The graph's body comes back as one statement; every output is a result again.
    expect_in(second_out, f"loaded {saved}: 1 statement, 2 results")
    second = results(second_out)
    for name in ("x", "r", "y", "t"):
        if not np.allclose(first[name], second[name], rtol=1e-6):
            fail(f"{name} differs after :save and :load", second_out)
    # The saved file is a model attnc run reads.
    np.save(os.path.join(work, "x.npy"), X)
    np.save(os.path.join(work, "r.npy"), first["r"].astype(np.float32))
    p = subprocess.run([attnc, "run", saved, "-b", "interp", "-i",
                        "x=" + os.path.join(work, "x.npy"), "-i",
                        "r=" + os.path.join(work, "r.npy"), "-o",
                        "t=" + os.path.join(work, "t.npy")],
                       capture_output=True, text=True)
    check_clean(p.stdout + p.stderr)
    if p.returncode != 0:
        fail("attnc run on the saved session", p.stdout + p.stderr)
    t = np.load(os.path.join(work, "t.npy"))
    if not np.allclose(t.ravel(), first["t"], rtol=1e-5, atol=1e-6):
        fail(f"attnc run gives {t.ravel()}, the session {first['t']}")
    # A file that fails part way leaves the session as it was.
    bad = os.path.join(work, "bad.attn")
    with open(bad, "w") as f:
        f.write("# :input q f32[2] = ones\nfine = add(q, q)\nbroken = nope(q)\n")
    out = session(attnc, [X_LINE, f":load {bad}", ":print q", ":print fine", ":print x"],
                  expect=1)
    expect_in(out, f"{bad}:3:10: error: unknown op 'nope'", "no tensor named 'q'",
              "no tensor named 'fine'", "x: f32[2, 3], 6 elements")


def test_print_statistics(attnc):
    data = [3.0, float("nan"), -1.5, 2.0, 0.25, 7.0]
    out = session(attnc, [":input n f32[2, 3] = [3, nan, -1.5, 2, 0.25, 7]",
                          "m = mul(n, 2.0)", ":print m"])
    finite = np.array([v * 2 for v in data if v == v])
    match = re.search(r"m: f32\[2, 3\], 6 elements\n  min (\S+)  max (\S+)  mean (\S+)  std "
                      r"(\S+)\n  nan (\d+)  inf (\d+)\n  \[([^\]]*)\]", out)
    if not match:
        fail(":print output", out)
    stats = [float(v) for v in match.group(1, 2, 3, 4)]
    want = [finite.min(), finite.max(), finite.mean(), finite.std()]
    if not np.allclose(stats, want, rtol=1e-5):
        fail(f":print statistics {stats}, want {want}", out)
    if match.group(5) != "1" or match.group(6) != "0":
        fail("NaN or inf count", out)
    if not match.group(7).startswith("6, nan, -3, 4, 0.5, 14"):
        fail("leading values", out)


def test_commands(attnc):
    out = session(attnc, [X_LINE, ":time on", "y = exp(x)", ":passes", ":passes none",
                          ":passes nope", "z = exp(y)", ":ir", ":help", ":time off",
                          ":quit", "never = exp(x)"], expect=1)
    if not re.search(r"^time: compile \d+\.\d+ ms, run \d+\.\d+ ms \(cpu\)$", out, re.M):
        fail(":time line", out)
    expect_in(out, "passes default\n", "passes none\n", "unknown pass 'nope'",
              "graph repl(x: f32[2, 3]) -> (y: f32[2, 3], z: f32[2, 3])", ":load FILE",
              "time off\n")
    if "never" in out:
        fail("statements after :quit ran", out)
    usage = subprocess.run([attnc, "repl", "--help"], capture_output=True, text=True).stdout
    expect_in(usage, "$XDG_STATE_HOME/attnc/history", "~/.attnc_history", ":input NAME TYPE",
              ":save FILE", ":backend")


def read_until(fd, pattern, output, timeout=60.0):
    deadline = time.time() + timeout
    while pattern not in output[0]:
        left = deadline - time.time()
        if left <= 0:
            fail(f"timed out waiting for {pattern!r}", output[0])
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                fail(f"the session ended before {pattern!r}", output[0])
            output[0] += chunk.decode(errors="replace")


def test_pty(attnc, work):
    home = os.path.join(work, "home")
    os.makedirs(home, exist_ok=True)
    history = os.path.join(home, ".attnc_history")
    if os.path.exists(history):
        os.remove(history)
    env = dict(os.environ, HOME=home, TERM="dumb")
    env.pop("XDG_STATE_HOME", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(attnc, [attnc, "repl"], env)
    output = [""]
    read_until(fd, "attn> ", output)
    os.write(fd, b":input x f32[3] = [1, 2, 3]\r")
    read_until(fd, "x: f32[3] [1, 2, 3]", output)
    # Typed with a letter missing, then fixed in place: Ctrl-A to the start, Ctrl-F four
    # times, insert the 'a'. Only line editing turns this into add(x, x).
    os.write(fd, b"z = dd(x, x)\x01\x06\x06\x06\x06a\r")
    read_until(fd, "z: f32[3] [2, 4, 6]", output)
    os.write(fd, b"def f(a) {\r")
    read_until(fd, "...", output)
    os.write(fd, b"  return exp(a)\r}\rw = f(x)\r")
    read_until(fd, "w: f32[3] [2.71828", output)
    os.write(fd, b":quit\r")
    # Everything up to the end (a sanitizer report comes last), then the exit status.
    try:
        while chunk := os.read(fd, 4096):
            output[0] += chunk.decode(errors="replace")
    except OSError:  # EIO once the session has closed the terminal
        pass
    _, status = os.waitpid(pid, 0)
    check_clean(output[0])
    print(output[0])
    if os.waitstatus_to_exitcode(status) != 0:
        fail(f"exit status {os.waitstatus_to_exitcode(status)}", output[0])
    with open(history) as f:
        saved = f.read().replace("\\040", " ")  # libedit's file escapes blanks
    if "z = add(x, x)" not in saved:
        fail(f"history file lacks the edited line: {saved!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--attnc", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("mode", choices=["transcript", "pty"])
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.mode == "pty":
        test_pty(args.attnc, args.work)
    else:
        test_softmax_and_recovery(args.attnc)
        test_multiline_def_let_and_repeat(args.attnc)
        test_backends_agree(args.attnc)
        test_save_load_run(args.attnc, args.work)
        test_print_statistics(args.attnc)
        test_commands(args.attnc)
    print("PASS")


if __name__ == "__main__":
    main()
