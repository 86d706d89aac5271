#!/usr/bin/python3
"""Minimal safetensors reader and writer in NumPy (numpy + stdlib only).

Part of attnc's independent test references: it shares no code with attnc's C
loader, so a bug there cannot hide here.  File format: an 8-byte little-endian
header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}} plus an
optional "__metadata__"), then the raw little-endian tensor bytes.  BF16 is
widened to float32 by shifting its bits into the high half of a 32-bit word.

  load(path) -> {name: np.ndarray}
      path: a .safetensors file, or a directory holding model.safetensors.index.json
      (sharded, weight_map name -> shard file), model.safetensors, or *.safetensors.
  save(path, tensors, dtypes=None, metadata=None)
      dtypes: optional {name: "F32"|"F16"|"BF16"|...}; default from the array dtype.

Running the file as a script does a write/read round trip self-test.
"""
import glob
import json
import os
import struct
import sys

import numpy as np

# safetensors dtype -> little-endian numpy dtype (BF16 handled separately).
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def bf16_to_f32(raw_u16):
    return (raw_u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """Round float32 to bfloat16 bits (nearest, ties to even; NaN kept NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), r)


def read_file(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} exceeds file size {len(buf)}")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape = info["dtype"], tuple(info["shape"])
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: {name}: data_offsets {begin}..{end} out of range")
        count = int(np.prod(shape, dtype=np.int64))
        if dt == "BF16":
            raw = np.frombuffer(data[begin:end], dtype="<u2")
            arr = bf16_to_f32(raw)
        elif dt in DTYPES:
            arr = np.frombuffer(data[begin:end], dtype=DTYPES[dt])
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        if arr.size != count:
            raise ValueError(f"{path}: {name}: {end - begin} bytes do not hold {dt}{list(shape)}")
        out[name] = arr.reshape(shape).astype(arr.dtype.newbyteorder("="))
    return out


def load(path):
    """Load every tensor of a file or checkpoint directory (sharded or not)."""
    if os.path.isfile(path):
        return read_file(path)
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            out.update(read_file(os.path.join(path, shard)))
        missing = sorted(set(weight_map) - set(out))
        if missing:
            raise ValueError(f"{index}: tensors missing from the shards: {missing[:5]}")
        return out
    single = os.path.join(path, "model.safetensors")
    files = [single] if os.path.isfile(single) else sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"{path}: no safetensors file or index found")
    out = {}
    for f in files:
        out.update(read_file(f))
    return out


def save(path, tensors, dtypes=None, metadata=None):
    """Write {name: array} as a safetensors file (names sorted, 8-byte aligned header)."""
    inv = {np.dtype(v).newbyteorder("<").str: k for k, v in DTYPES.items()}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        dt = (dtypes or {}).get(name) or inv.get(arr.dtype.newbyteorder("<").str)
        if dt == "BF16":
            blob = f32_to_bf16(arr).astype("<u2").tobytes()
        elif dt in DTYPES:
            blob = np.ascontiguousarray(arr, dtype=DTYPES[dt]).tobytes()
        else:
            raise ValueError(f"{name}: cannot store numpy dtype {arr.dtype} as {dt}")
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)


def _self_test():
    import tempfile
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    t = {"a.f32": x, "b.f16": x.astype(np.float16), "c.bf16": x, "d.i64": np.arange(6).reshape(2, 3),
         "e.empty": np.zeros((0, 4), np.float32)}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        save(p, t, dtypes={"c.bf16": "BF16"}, metadata={"format": "pt"})
        r = load(p)
    assert set(r) == set(t)
    assert r["a.f32"].dtype == np.float32 and np.array_equal(r["a.f32"], x)
    assert r["b.f16"].dtype == np.float16 and np.array_equal(r["b.f16"], x.astype(np.float16))
    assert r["c.bf16"].dtype == np.float32 and np.allclose(r["c.bf16"], x, rtol=2 ** -8, atol=0)
    assert np.array_equal(r["d.i64"], t["d.i64"]) and r["e.empty"].shape == (0, 4)
    ties = np.float32([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5])
    assert bf16_to_f32(f32_to_bf16(ties)).tolist() == [1.0, 1 + 2 ** -6, 1 + 2 ** -7, -2.5]
    print("safetensors_np: round trip OK (F32, F16, BF16, I64, empty)")


if __name__ == "__main__":
    if len(sys.argv) == 2:
        for k, v in sorted(load(sys.argv[1]).items()):
            print(k, v.dtype, list(v.shape))
    else:
        _self_test()
