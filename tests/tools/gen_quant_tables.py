#!/usr/bin/env python3
"""Regenerate and check the float32 constants of src/quant/format_tables.hpp.

Needs numpy and scipy (e.g. python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy scipy).
  gen_quant_tables.py          print the tables as C++ float literals
  gen_quant_tables.py --check  compare them bit for bit with the header (exit 1 on a mismatch)

Emulates what PyTorch does on the CPU, in float32: torch.linspace (step = (end - start) /
(steps - 1); the first half start + step * i, the second half end - step * (steps - 1 - i)),
norm.ppf in float64 on the float32 points, torch.Tensor(list) rounds once to float32, the
division by the maximum is a float32 division. Sources: peft NFQuantizer.create_normal_map /
create_uniform_map, bitsandbytes functional.create_dynamic_map.
"""
import re
import sys

import numpy as np
from scipy.stats import norm

f32 = np.float32


def linspace_f32(start, end, steps):
    start, end = f32(start), f32(end)
    if steps == 1:
        return np.array([start], dtype=f32)
    step = f32(f32(end - start) / f32(steps - 1))
    half = steps // 2
    out = []
    for i in range(steps):
        if i < half:
            out.append(f32(start + f32(step * f32(i))))
        else:
            out.append(f32(end - f32(step * f32(steps - i - 1))))
    return np.array(out, dtype=f32)


def normal_map(bits, offset=0.9677083):
    v = 2 ** bits
    v1 = norm.ppf(linspace_f32(offset, 0.5, v // 2 + 1)[:-1].astype(np.float64)).tolist()
    v3 = (-norm.ppf(linspace_f32(offset, 0.5, v // 2)[:-1].astype(np.float64))).tolist()
    values = np.sort(np.array(v1 + [0.0] + v3, dtype=f32))
    return (values / values.max()).astype(f32)


def uniform_map(bits):
    return linspace_f32(-1.0, 1.0, 2 ** bits)


def dynamic_map_signed(max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1
        b = linspace_f32(0.1, 1.0, items)
        means = ((b[:-1] + b[1:]) / f32(2.0)).astype(f32)
        scale = f32(10 ** (-(max_exponent_bits - 1) + i))
        data += (scale * means).astype(f32).tolist()
        data += (f32(-scale) * means).astype(f32).tolist()
    data += [0.0, 1.0]
    assert len(data) == 2 ** total_bits
    return np.array(sorted(data), dtype=f32)


BNB_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
           -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
           0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
           0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]


def literal(x):
    return repr(float(f32(x))) + "f"


def tables():
    return {
        "kNF2": normal_map(2), "kNF8": normal_map(8),
        "kUniform2": uniform_map(2), "kUniform4": uniform_map(4), "kUniform8": uniform_map(8),
        "kDynamicSigned8": dynamic_map_signed(),
    }


def self_checks():
    assert normal_map(2).tolist() == np.array([-1.0, 0.0, 0.33791524171829224, 1.0], f32).tolist()
    assert normal_map(4).tolist() == np.array(BNB_NF4, f32).tolist(), "LoftQ NF4 != bnb NF4"


def header_arrays(path):
    text = open(path).read()
    out = {}
    for name, body in re.findall(r"(k\w+)\[\d+\]\s*=\s*\{([^}]*)\}", text):
        vals = [v.strip().rstrip("f") for v in body.replace("\n", " ").split(",") if v.strip()]
        out[name] = np.array([float(v) for v in vals], dtype=f32)
    return out


def main():
    self_checks()
    t = tables()
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
