#!/usr/bin/env python3
"""The peer of bench_loftq: PEFT's LoftQ algorithm (loftq_init, FORMATS.md section 1) in PyTorch
on the same device and the same shapes: a FULL torch.linalg.svd per iteration and bitsandbytes
NF4 (FORMATS.md section 2, exact IEEE rule, float32 thresholds bit for bit) written in torch,
since bitsandbytes is not installed on the GPU machine. Everything stays on the device (PEFT's
bnb path also copies the residual to the CPU each iteration: this peer is the faster variant).

The test matrix has the same distribution as bench_loftq's (not the same numbers: another RNG):
  W = 0.02 N + G1 diag(0.01 exp(-j / 8)) G2,   N (m x n), G1 (m x 32), G2 (32 x n) standard normal.

Output: one JSON object per line on stdout:
  {"shape": [m, n], "iters": T, "rank": r, "device": ..., "median_ms": ..., "repeats": k,
   "error": ||W - Q - L R|| / ||W|| (the adapter compensated, PEFT's best case),
   "error_peft_scaling": the same with s = alpha / r = 0.25 on L R (what PEFT loads, peft#1982),
   "qlora_error": ||W - Q_plain|| / ||W||}
Shapes past --budget-s seconds of total run time are reported as {"skipped": "budget"}.
"""
import argparse
import json
import math
import statistics
import struct
import sys
import time

import torch

NF4_THRESH_BITS = [0xbf591cd9, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871,
                   0x3d22faff, 0x3df64863, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d03, 0x3f248daf,
                   0x3f5c89d9]
NF4_TABLE_BITS = [0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871,
                  0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab,
                  0x3f3913b3, 0x3f800000]


def f32(bits):
    return [struct.unpack("<f", struct.pack("<I", b))[0] for b in bits]


class NF4:
    def __init__(self, device, blocksize=64):
        self.thresh = torch.tensor(f32(NF4_THRESH_BITS), dtype=torch.float32, device=device)
        self.table = torch.tensor(f32(NF4_TABLE_BITS), dtype=torch.float32, device=device)
        self.bs = blocksize

    def quant_dequant(self, x):
        """Q = table[code] * absmax per block of the flattened x (float32, numel % bs == 0)."""
        blocks = x.reshape(-1, self.bs)
        absmax = blocks.abs().amax(dim=1, keepdim=True)
        scale = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
        y = blocks * scale
        codes = torch.searchsorted(self.thresh, y.contiguous(), right=False)  # thresholds strictly below
        return (self.table[codes] * absmax).reshape(x.shape)


def low_rank(res, r):
    u, s, vh = torch.linalg.svd(res, full_matrices=False)
    sq = torch.sqrt(s[:r])
    return u[:, :r] * sq, sq[:, None] * vh[:r]


def loftq_peft(w, r, iters, nf4):
    res = w
    for _ in range(iters):
        q = nf4.quant_dequant(res)
        res = w - q
        lmat, rmat = low_rank(res, r)
        res = w - lmat @ rmat
    return q, lmat, rmat


def test_matrix(m, n, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    w = 0.02 * torch.randn(m, n, generator=g, device=device)
    g1 = torch.randn(m, 32, generator=g, device=device)
    g2 = torch.randn(32, n, generator=g, device=device)
    d = 0.01 * torch.exp(-torch.arange(32, device=device, dtype=torch.float32) / 8)
    w += (g1 * d) @ g2
    return w


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", type=int, default=1, help="divide every dimension (CPU dry runs)")
    ap.add_argument("--shapes", default="1024x8192,8192x8192,28672x8192,8192x28672")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=240)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # float32, as PEFT runs by default
    nf4 = NF4(a.device)
    start = time.perf_counter()
    # Warm-up: cuSOLVER / cuBLAS handles and kernels load outside the timed runs.
    loftq_peft(test_matrix(256, 512, a.device, 1), 16, 1, nf4)
    sync(a.device)
    for spec in a.shapes.split(","):
        m, n = (int(v) // a.scale for v in spec.split("x"))
        rec = {"shape": [m, n], "iters": a.iters, "rank": a.rank, "device": a.device,
               "torch": torch.__version__}
        if time.perf_counter() - start > a.budget_s:
            rec["skipped"] = "budget"
            print(json.dumps(rec), flush=True)
            continue
        w = test_matrix(m, n, a.device, 1234)
        times = []
        for _ in range(a.repeats):
            sync(a.device)
            t0 = time.perf_counter()
            q, lmat, rmat = loftq_peft(w, a.rank, a.iters, nf4)
            sync(a.device)
            times.append(time.perf_counter() - t0)
        wn = torch.linalg.norm(w.double()).item()
        lr = (lmat @ rmat).double()
        rest = w.double() - q.double()
        rec.update({
            "median_ms": 1e3 * statistics.median(times), "repeats": a.repeats,
            "error": torch.linalg.norm(rest - lr).item() / wn,
            "error_peft_scaling": torch.linalg.norm(rest - 0.25 * lr).item() / wn,
            "qlora_error": torch.linalg.norm(w.double() - nf4.quant_dequant(w).double()).item() / wn,
        })
        print(json.dumps(rec), flush=True)
        del w, q, lmat, rmat, lr, rest
        if a.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
