#!/usr/bin/env python3
"""Write a checkpoint folder holding ONE linear weight (bf16 safetensors + config.json), the test case
of the speed benchmarks (bench/speed_peft.sh, bench/roofline.sh, bench/passes.sh):

  one_matrix.py DIR ROWS COLS [--seed S] [--dist lowrank|heavy]

Tensor `model.layers.0.mlp.fc1.weight` (ROWS x COLS), config model_type "bench_one" (a regular layout
that loftq plans like any decoder: one Linear4bit target). Distributions (numpy, fixed seed):
  lowrank  W = 0.02 N + G1 diag(0.01 exp(-j / 8)) G2   (bench_loftq's: noise + a decaying rank-32 part)
  heavy    W = 0.02 T3 + the same low-rank part, T3 Student-t with 3 degrees of freedom (heavy tails,
           outliers of 10-50 sigma, as in real LLM weights)
"""
import argparse
import json
import os
import struct

import numpy as np


def bf16_bytes(a):
    """Round-to-nearest-even float32 -> bfloat16, little-endian bytes."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r.tobytes()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("rows", type=int)
    p.add_argument("cols", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dist", choices=["lowrank", "heavy"], default="lowrank")
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    m, n = a.rows, a.cols
    noise = rng.standard_t(3, size=(m, n)) if a.dist == "heavy" else rng.standard_normal((m, n))
    w = 0.02 * noise.astype(np.float32)
    g1 = rng.standard_normal((m, 32)).astype(np.float32)
    g2 = rng.standard_normal((32, n)).astype(np.float32)
    w += (g1 * (0.01 * np.exp(-np.arange(32) / 8.0)).astype(np.float32)) @ g2
    name = "model.layers.0.mlp.fc1.weight"
    data = bf16_bytes(w)
    header = {name: {"dtype": "BF16", "shape": [m, n], "data_offsets": [0, len(data)]}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump({"model_type": "bench_one", "architectures": ["BenchOneForCausalLM"],
                   "hidden_size": n, "intermediate_size": m, "num_hidden_layers": 1,
                   "num_attention_heads": 16, "vocab_size": 32,
                   "torch_dtype": "bfloat16"}, f, indent=1)


if __name__ == "__main__":
    main()
