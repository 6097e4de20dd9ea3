#!/usr/bin/python3
"""Independent reference of PEFT's LoftQ (`loftq_init`) in numpy, written from
shared/spec/FORMATS.md sections 1 and 2 (not from our C++), and the comparison with a run file.

    loftq_reference.py --model DIR --run RUN.h5 --rank R --iters T [--blocksize 64] [--tol 1e-5]

For every matrix in the run file it recomputes PEFT's algorithm on the original weight
(NF4 bit-exact with bitsandbytes, or its LLM.int8 for an int8 run (PEFT's num_bits=8), exact
float32 SVD via LAPACK, Q of the last iteration,
sqrt(S) split evenly, no LoRA-scaling compensation) and checks that the run file's Q, B@A and
per-iteration errors agree within --tol (relative Frobenius). Exit 1 on any disagreement.
Needs Debian's python3-numpy and python3-h5py.
"""
import argparse
import json
import struct
import sys
from fractions import Fraction

import numpy as np

# --- bitsandbytes NF4 (FORMATS.md section 2) ------------------------------------------------

NF4_TABLE = [
    "-1.0", "-0.6961928009986877", "-0.5250730514526367", "-0.39491748809814453",
    "-0.28444138169288635", "-0.18477343022823334", "-0.09105003625154495", "0.0",
    "0.07958029955625534", "0.16093020141124725", "0.24611230194568634", "0.33791524171829224",
    "0.44070982933044434", "0.5626170039176941", "0.7229568362236023", "1.0"]
NF4_THRESHOLDS = [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]


def f32_from_decimal(text):
    """The float32 nearest to the decimal `text` (what a C `float` literal gives); rounding
    through a Python float (double) first is 1 ulp off for some of the thresholds."""
    exact = Fraction(text)
    guess = np.float32(float(text))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]

    def key(c):
        bits = int(np.array(c, dtype=np.float32).view(np.uint32))
        return (abs(Fraction(float(c)) - exact), bits & 1)  # nearest, ties to even mantissa
    return min(candidates, key=key)


TABLE = np.array([f32_from_decimal(t) for t in NF4_TABLE], dtype=np.float32)
THRESHOLDS = np.array([f32_from_decimal(t) for t in NF4_THRESHOLDS], dtype=np.float32)


def nf4_quantize(x, blocksize):
    """Codes (one per element, unpacked) and float32 absmax per block of the flattened x."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    n = flat.size
    nblocks = (n + blocksize - 1) // blocksize
    padded = np.zeros(nblocks * blocksize, dtype=np.float32)
    padded[:n] = flat
    blocks = padded.reshape(nblocks, blocksize)
    absmax = np.abs(blocks).max(axis=1).astype(np.float32)
    with np.errstate(divide="ignore"):
        scale = np.where(absmax > 0, np.float32(1.0) / absmax, np.float32(0.0)).astype(np.float32)
    y = (blocks * scale[:, None]).astype(np.float32)
    codes = (y[:, :, None] > THRESHOLDS[None, None, :]).sum(axis=2)
    codes[absmax == 0] = 0
    return codes.reshape(-1)[:n].astype(np.uint8), absmax


def nf4_dequantize(codes, absmax, blocksize, shape):
    n = codes.size
    block = np.arange(n) // blocksize
    return (TABLE[codes] * absmax[block]).astype(np.float32).reshape(shape)


# --- bitsandbytes LLM.int8 (FORMATS.md section 6; PEFT loftq_init num_bits=8) ---------------

INT8_DEQUANT = np.float32(7.874015718698502e-3)


def int8_quantize(x):
    """Int8Params(x): float16 cast, row absmax SCB, code = round(h * ((1 / SCB) * 127)), half to
    even (torch evaluates 127.0 / SCB as SCB.reciprocal() * 127); a zero row gives code 0."""
    h = np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)
    scb = np.abs(h).max(axis=1).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = ((np.float32(1.0) / scb).astype(np.float32) * np.float32(127)).astype(np.float32)
        y = (h * scale[:, None]).astype(np.float32)
    codes = np.where(np.isnan(y), 0, np.rint(y)).astype(np.int8)
    return codes, scb


def int8_dequantize(codes, scb):
    return ((codes.astype(np.float32) * scb[:, None]).astype(np.float32) * INT8_DEQUANT).astype(np.float32)


def quantize_dequantize(fmt, x, blocksize):
    if fmt == "int8":
        return int8_dequantize(*int8_quantize(x))
    codes, absmax = nf4_quantize(x, blocksize)
    return nf4_dequantize(codes, absmax, blocksize, x.shape)


# --- PEFT loftq_init (FORMATS.md section 1) -------------------------------------------------

def peft_loftq(w, rank, iters, blocksize, fmt="nf4"):
    """Q (last iteration), lora_A = R [r, in], lora_B = L [out, r], error per iteration."""
    w = w.astype(np.float32)
    wnorm = np.linalg.norm(w.astype(np.float64))
    res = w
    errors = []
    for _ in range(iters):
        q = quantize_dequantize(fmt, res, blocksize)
        res = (w - q).astype(np.float32)
        u, s, vh = np.linalg.svd(res, full_matrices=False)
        root = np.sqrt(s[:rank]).astype(np.float32)
        lora_b = (u[:, :rank] * root[None, :]).astype(np.float32)
        lora_a = (root[:, None] * vh[:rank]).astype(np.float32)
        low = (lora_b @ lora_a).astype(np.float32)
        res = (w - low).astype(np.float32)
        errors.append(np.linalg.norm((w - q - low).astype(np.float64)) / wnorm)
    return q, lora_a, lora_b, errors


# --- inputs ----------------------------------------------------------------------------------

def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        b, e = meta["data_offsets"]
        raw = data[base + b:base + e]
        dt = meta["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            continue
        out[name] = arr.reshape(meta["shape"]).astype(np.float32)
    return out


def rel(a, b):
    denom = np.linalg.norm(b.astype(np.float64))
    return np.linalg.norm((a - b).astype(np.float64)) / (denom if denom > 0 else 1.0)


def unpack_nf4(packed, n):
    """bitsandbytes packing: the first element of each pair is the HIGH nibble."""
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 0x0F
    return codes[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()

    import h5py  # Debian python3-h5py

    weights = {}
    import glob
    import os
    for path in sorted(glob.glob(os.path.join(args.model, "*.safetensors"))):
        weights.update(load_safetensors(path))

    worst = 0.0
    failures = 0
    with h5py.File(args.run, "r") as run:
        complete = run["complete"][...]
        for index, name in enumerate(sorted(run["matrices"].keys(), key=lambda k: run["matrices"][k].attrs["index"])):
            g = run["matrices"][name]
            i = int(g.attrs["index"])
            fmt = g.attrs["format"]
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            if fmt not in ("nf4", "int8") or bool(g.attrs["double_quant"]):
                print(f"{name}: format {fmt} is not plain nf4 or int8; the reference covers PEFT's paths only")
                return 2
            if not complete[i]:
                print(f"{name}: not complete in {args.run}")
                failures += 1
                continue
            rows, cols = int(g.attrs["rows"]), int(g.attrs["cols"])
            rank, iters, bs = int(g.attrs["rank"]), int(g.attrs["iters"]), int(g.attrs["blocksize"])
            w = weights[name]
            q_ref, a_ref, b_ref, err_ref = peft_loftq(w, rank, iters, bs, fmt)
            if fmt == "int8":
                codes = g["codes"][...].view(np.int8).reshape(rows, cols)
                q = int8_dequantize(codes, g["absmax"][...].astype(np.float32))
            else:
                codes = unpack_nf4(g["codes"][...], rows * cols)
                q = nf4_dequantize(codes, g["absmax"][...].astype(np.float32), bs, (rows, cols))
            ba = (g["B"][...] @ g["A"][...]).astype(np.float32)
            ba_ref = (b_ref @ a_ref).astype(np.float32)
            err = g["iteration_error"][...]
            d_q = rel(q, q_ref)
            d_ba = rel(ba, ba_ref)
            d_err = max(abs(e - r) / r for e, r in zip(err, err_ref))
            worst = max(worst, d_q, d_ba, d_err)
            ok = d_q <= args.tol and d_ba <= args.tol and d_err <= args.tol
            failures += 0 if ok else 1
            print(f"{'ok  ' if ok else 'FAIL'} {name} [{rows}x{cols}] r={rank} T={iters}: "
                  f"Q {d_q:.2e}  B@A {d_ba:.2e}  errors {d_err:.2e}  (final error {err[-1]:.6f} vs {err_ref[-1]:.6f})")
    print(f"reference: {failures} matrices disagree, worst relative difference {worst:.2e} (tolerance {args.tol:g})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
