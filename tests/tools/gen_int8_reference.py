#!/usr/bin/env python3
"""Reference vectors of bitsandbytes' LLM.int8 quantizer for tests/test_quant_int8.cpp.

Runs the real thing, the path `load_in_8bit` takes: `bnb.nn.Int8Params(W).to("cpu")`
(Int8Params._quantize: W.to(float16), then int8_vectorwise_quant) and
`bnb.functional.int8_vectorwise_dequant(CB, SCB)` (what PEFT's loftq_init(num_bits=8) holds).
Writes tests/data/int8_reference/int8_reference.safetensors with, per case C:
  C.input F32 [rows, cols]   C.CB I8 [rows, cols]   C.SCB F32 [rows]   C.dequant F32 [rows, cols]
Cases: real stories260K matrices and adversarial rows (ties at .5, zeros, one value, the float16
cast: rounding, values in (65504, 65520) that round to 65504, subnormals, values flushed to 0).
Values >= 65520 overflow float16 (bitsandbytes gives NaN codes): our quantizer refuses them, so
they are not here (the C++ test checks the refusal).

Environment: the client venv (launch/client-venv.sh), from the repository root:
  ~/.cache/loftq/venv-client/bin/python tests/tools/gen_int8_reference.py
Generated with bitsandbytes 0.50.2, torch 2.15.0 (CPU).
"""
import os
import sys

import numpy as np
import torch
import bitsandbytes as bnb
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "int8_reference", "int8_reference.safetensors")


def adversarial():
    rng = np.random.default_rng(13)
    cases = {}
    # Ties: h * (127 / SCB) exactly k + 0.5 (SCB 127 -> scale 1; SCB 254 -> scale 0.5).
    ties = np.zeros((4, 16), np.float32)
    ties[0, :15] = np.arange(15) - 7 + 0.5
    ties[0, 15] = 127
    ties[1, :15] = (np.arange(15) - 7) * 2 + 1
    ties[1, 15] = -254
    ties[2, :] = np.array([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 125.5, -125.5, 126.5, -126.5,
                           62.5, 63.5, 64.5, 127], np.float32)
    ties[3, :] = np.linspace(-1, 1, 16, dtype=np.float32)  # scale 127: near ties in float32
    cases["ties"] = ties
    # Zeros: an all-zero row, a row of signed zeros, a row with one non-zero.
    zeros = np.zeros((3, 8), np.float32)
    zeros[1, :] = -0.0
    zeros[2, 3] = -3.25
    cases["zeros"] = zeros
    # A row of one value (every code +-127), positive, negative, tiny, large.
    cases["constant"] = np.array([[0.3] * 8, [-5.5] * 8, [1e-6] * 8, [60000.0] * 8], np.float32)
    # The float16 cast: float32 values between float16 values (round to nearest even, ties),
    # (65504, 65520) rounds to 65504, subnormals, values below half the smallest subnormal -> 0.
    cast = np.zeros((5, 12), np.float32)
    cast[0] = (1 + (np.arange(12) + 0.5) * 2.0 ** -10).astype(np.float32)  # fp16 ties at ulp/2
    cast[1] = rng.standard_normal(12).astype(np.float32) * 3
    cast[2] = np.array([65519, 65505, -65510, 65504, 1, -1, 0.1, 1000, 3e4, -3e4, 5, 7], np.float32)
    cast[3] = (np.arange(12) - 6).astype(np.float32) * 6e-8  # float16 subnormals (2^-24 = 5.96e-8)
    cast[4] = np.array([2e-8, -2e-8, 3e-8, 1e-9, 6e-8, 1e-4, 0, 0, 0, 0, 0, 0], np.float32)
    cases["cast"] = cast
    # Random rows at several magnitudes.
    rnd = rng.standard_normal((6, 40)).astype(np.float32)
    rnd *= np.array([1e-3, 1e-1, 1, 10, 1e3, 1e4], np.float32)[:, None]
    cases["random"] = rnd
    return cases


def main():
    model = load_file(os.path.join(ROOT, "tests", "data", "stories260K", "model.safetensors"))
    cases = adversarial()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.4.mlp.down_proj.weight"):
        cases[name.replace("model.layers.", "real.").replace(".weight", "")] = model[name].astype(np.float32)
    out = {}
    for case, x in cases.items():
        p = bnb.nn.Int8Params(torch.from_numpy(x.copy()), requires_grad=False).to("cpu")
        cb, scb = p.data, p.SCB
        direct = bnb.functional.int8_vectorwise_quant(torch.from_numpy(x).to(torch.float16))
        assert torch.equal(direct[0], cb) and torch.equal(direct[1], scb), case
        out[case + ".input"] = x
        out[case + ".CB"] = cb.numpy()
        out[case + ".SCB"] = scb.numpy()
        out[case + ".dequant"] = bnb.functional.int8_vectorwise_dequant(cb, scb).numpy()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata={"bitsandbytes": bnb.__version__, "torch": torch.__version__})
    print(f"{OUT}: {len(cases)} cases")


if __name__ == "__main__":
    sys.exit(main())
