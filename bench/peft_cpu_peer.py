#!/usr/bin/env python3
"""The peer of bench/speed_peft.sh: PEFT's OWN LoftQ, peft.utils.loftq_utils.loftq_init, on the CPU.

  peft_cpu_peer.py MODEL_DIR --rank R --iters T --threads N [--tensor NAME] [--lock FILE]

Run with the client venv's python (~/.cache/loftq/venv-client/bin/python: torch, peft,
bitsandbytes). loftq_init hard-codes `compute_device = "xpu" if is_xpu_available() else "cuda"`;
the ONLY change made here is that expression, replaced by "cpu" in loftq_init's source (the
replacement is asserted to happen exactly once) and the function re-executed in the module's own
namespace, so the algorithm is PEFT's line for line: bitsandbytes NF4 (Params4bit quantizes on the
CPU, dequantize_4bit) and a full torch.linalg.svd of the residual per iteration.

Timed (time.perf_counter): the loftq_init call alone, under the timing lock (--lock, default
/tmp/bench.lock, taken with flock just around the call). The peer's best case: interpreter start,
imports, reading the weight and the error evaluation are NOT counted. torch.set_num_threads(N).
Weight: the one tensor of MODEL_DIR/model.safetensors (bf16), cast to float32.

Errors (relative Frobenius, accumulated in float64):
  error        ||W - Q - L R|| / ||W||, Q the dequantized weight loftq_init returns, L = lora_B,
               R = lora_A (PEFT's best case: no LoRA scaling s = alpha / r on L R)
  qlora_error  ||W - NF4(W)|| / ||W||, bitsandbytes' Params4bit + dequantize_4bit on the CPU
               (the same calls loftq_init makes: it checks the CPU path works before the timing)
Prints one JSON object on stdout. Takes ~25 s for 5504 x 2048, r = 64, T = 5 on 2 cores, plus
~5 s of imports.
"""
import argparse
import fcntl
import inspect
import json
import os
import platform
import time


def cpu_loftq_init(lu):
    """PEFT's loftq_init with compute_device forced to "cpu", nothing else changed."""
    src = inspect.getsource(lu.loftq_init)
    old = 'compute_device = "xpu" if is_xpu_available() else "cuda"'
    if src.count(old) != 1:
        raise SystemExit(f"peft_cpu_peer: loftq_init of {lu.__file__} does not contain exactly one "
                         f"'{old}'; this peer patches only that line")
    src = src.replace(old, 'compute_device = "cpu"')
    ns = dict(vars(lu))
    exec(compile(src, lu.__file__, "exec"), ns)
    return ns["loftq_init"]


def rel_err(w64, approx):
    return float((w64 - approx.double()).norm() / w64.norm())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tensor", default=None, help="default: the file's only tensor")
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--iters", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--lock", default="/tmp/bench.lock")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    import bitsandbytes as bnb
    import peft
    import peft.utils.loftq_utils as lu
    from safetensors import safe_open

    with safe_open(os.path.join(a.model, "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
        name = a.tensor or (names[0] if len(names) == 1 else None)
        if name is None:
            raise SystemExit(f"peft_cpu_peer: {a.model} holds {len(names)} tensors; pass --tensor")
        w_stored = f.get_tensor(name)
    w = w_stored.to(torch.float32)
    w64 = w.double()
    loftq_init = cpu_loftq_init(lu)

    # bitsandbytes' CPU path, the calls loftq_init makes: quantize on the CPU, dequantize.
    q4 = bnb.nn.Params4bit(w.clone(), requires_grad=False, compress_statistics=False,
                           quant_type="nf4").to("cpu")
    assert q4.bnb_quantized and q4.data.device.type == "cpu", "bitsandbytes did not quantize on the CPU"
    dq = bnb.functional.dequantize_4bit(q4.data, q4.quant_state)
    assert dq.device.type == "cpu" and dq.shape == w.shape and bool(torch.isfinite(dq).all())
    qlora = rel_err(w64, dq)
    assert 0.0 < qlora < 0.5, f"bitsandbytes NF4 on the CPU gives an implausible error {qlora}"

    with open(a.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.perf_counter()
        q, lora_a, lora_b = loftq_init(w, num_bits=4, reduced_rank=a.rank, num_iter=a.iters)
        seconds = time.perf_counter() - t0
        fcntl.flock(lock, fcntl.LOCK_UN)

    assert q.device.type == "cpu" and lora_b.shape == (w.shape[0], a.rank) and lora_a.shape == (a.rank, w.shape[1])
    err = rel_err(w64, q.to(torch.float32).double() + lora_b.double() @ lora_a.double())
    print(json.dumps({
        "seconds": seconds, "error": err, "qlora_error": qlora,
        "tensor": name, "stored_dtype": str(w_stored.dtype), "shape": list(w.shape),
        "rank": a.rank, "iters": a.iters, "num_bits": 4,
        "torch_threads": torch.get_num_threads(),
        "patch": 'compute_device = "cpu" (was "xpu" if is_xpu_available() else "cuda")',
        "versions": {"torch": torch.__version__, "peft": peft.__version__,
                     "bitsandbytes": bnb.__version__, "python": platform.python_version()},
    }), flush=True)


if __name__ == "__main__":
    main()
