#!/usr/bin/env python3
"""Regenerate and check the computed float32 tables of src/quant/format_tables.hpp from the
libraries that define them: bitsandbytes' functional.create_dynamic_map (double quantization) and
PEFT's NFQuantizer (LoftQ's NF2/NF8/uniform maps; PEFT removed it after 0.19).

They are built with torch.linspace, whose CPU kernel is vectorised (a SIMD `arange` per chunk,
fused multiply-adds): no scalar float32 emulation reproduces every bit, so the values are taken
from the real functions. They were generated with torch 2.15.0 on an AVX512 CPU
(torch.backends.cpu.get_cpu_capability()), bitsandbytes 0.50.2 and peft 0.19.0; torch on another
SIMD width could differ in the last bit of a few entries.

Environment: the client venv (launch/client-venv.sh: torch, bitsandbytes) plus PEFT 0.19 and
scipy in a side folder:
  .venv-client/bin/python -m pip install --no-deps --target /tmp/peft019 peft==0.19.0 scipy
  PYTHONPATH=/tmp/peft019 .venv-client/bin/python tests/tools/gen_quant_tables.py          # print literals
  PYTHONPATH=/tmp/peft019 .venv-client/bin/python tests/tools/gen_quant_tables.py --check  # compare with the header
"""
import re
import sys

import numpy as np

f32 = np.float32

BNB_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
           -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
           0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
           0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]


def literal(x):
    return repr(float(f32(x))) + "f"


def tables():
    import torch
    import bitsandbytes.functional as bnbf
    from peft.utils.loftq_utils import NFQuantizer

    def peft_map(bits, method):
        q = NFQuantizer(num_bits=bits, device="cpu", method=method, block_size=64)
        return q.norm_lookup_table.to(torch.float32).numpy()

    print(f"# torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})", file=sys.stderr)
    return {
        "kNF2": peft_map(2, "normal"), "kNF8": peft_map(8, "normal"),
        "kUniform2": peft_map(2, "uniform"), "kUniform4": peft_map(4, "uniform"),
        "kUniform8": peft_map(8, "uniform"),
        "kDynamicSigned8": bnbf.create_dynamic_map(signed=True).numpy().astype(f32),
        "_nf4": peft_map(4, "normal"),
    }


def self_checks(t):
    assert t["kNF2"].tolist() == np.array([-1.0, 0.0, 0.33791524171829224, 1.0], f32).tolist()
    assert t.pop("_nf4").tolist() == np.array(BNB_NF4, f32).tolist(), "LoftQ NF4 != bnb NF4"


def header_arrays(path):
    text = open(path).read()
    out = {}
    for name, body in re.findall(r"(k\w+)\[\d+\]\s*=\s*\{([^}]*)\}", text):
        vals = [v.strip().rstrip("f") for v in body.replace("\n", " ").split(",") if v.strip()]
        out[name] = np.array([float(v) for v in vals], dtype=f32)
    return out


def main():
    t = tables()
    self_checks(t)
    if "--check" in sys.argv:
        header = sys.argv[-1] if sys.argv[-1].endswith(".hpp") else "src/quant/format_tables.hpp"
        have = header_arrays(header)
        bad = [n for n, v in t.items()
               if n not in have or have[n].view(np.uint32).tolist() != v.view(np.uint32).tolist()]
        print("mismatch: " + ", ".join(bad) if bad else "all tables match")
        sys.exit(1 if bad else 0)
    for name, v in t.items():
        print(f"{name}[{len(v)}] = {{" + ", ".join(literal(x) for x in v) + "}")


if __name__ == "__main__":
    main()
