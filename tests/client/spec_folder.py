#!/usr/bin/env python3
"""Write an output folder by hand from the spec (shared/spec/FORMATS.md sections 2 and 4),
independently of the loftq exporter, so that load_check.py can be tried on the layout itself.

  python tests/client/spec_folder.py --model ORIG --output OUT --backbone bnb4|bf16
        [--rank 8] [--lora-alpha 16] [--low-nibble-first]

One LoftQ iteration per target (all-linear): Q = NF4(W) (blocksize 64, own threshold code, not
bitsandbytes), L R = rank-r SVD of W - Q, lora_A = R, lora_B = L / s with s = alpha / r.
--low-nibble-first packs the codes the wrong way round (a corrupted folder load_check must reject).
"""
import argparse
import json
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import save_file

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
THRESHOLDS = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
              -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
              0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
              0.5016634166240692, 0.6427869200706482, 0.8614784181118011]
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BLOCK = 64


def nf4_quantize(w):
    flat = w.float().flatten()
    n = flat.numel()
    nb = (n + BLOCK - 1) // BLOCK
    padded = torch.zeros(nb * BLOCK)
    padded[:n] = flat
    absmax = padded.reshape(nb, BLOCK).abs().amax(1)
    scale = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    y = (padded.reshape(nb, BLOCK) * scale[:, None]).flatten()[:n]
    codes = (y[:, None] > torch.tensor(THRESHOLDS)[None, :]).sum(1)
    q = (torch.tensor(NF4)[codes] * absmax.repeat_interleave(BLOCK)[:n]).reshape(w.shape)
    return codes, absmax, q


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--backbone", choices=["bnb4", "bf16"], required=True)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16)
    p.add_argument("--low-nibble-first", action="store_true")
    a = p.parse_args()
    s = a.lora_alpha / a.rank
    os.makedirs(os.path.join(a.output, "loftq_init"), exist_ok=True)
    with safe_open(os.path.join(a.model, "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out, adapter = {}, {}
    for name, w in tensors.items():
        module = name.removesuffix(".weight")
        if not (name.endswith(".weight") and module.split(".")[-1] in TARGETS):
            out[name] = w
            continue
        codes, absmax, q = nf4_quantize(w)
        u, sv, vh = torch.linalg.svd((w.float() - q).double(), full_matrices=False)
        root = sv[: a.rank].sqrt()
        adapter[f"base_model.model.{module}.lora_A.weight"] = (root[:, None] * vh[: a.rank]).float().contiguous()
        adapter[f"base_model.model.{module}.lora_B.weight"] = (u[:, : a.rank] * root / s).float().contiguous()
        if a.backbone == "bf16":
            out[name] = q.to(torch.bfloat16)
            continue
        c = torch.cat([codes, torch.zeros(codes.numel() % 2, dtype=codes.dtype)]).reshape(-1, 2)
        hi, lo = (c[:, 1], c[:, 0]) if a.low_nibble_first else (c[:, 0], c[:, 1])
        out[name] = (hi * 16 + lo).to(torch.uint8).reshape(-1, 1)
        out[name + ".absmax"] = absmax.float()
        out[name + ".quant_map"] = torch.tensor(NF4, dtype=torch.float32)
        state = {"quant_type": "nf4", "blocksize": BLOCK, "dtype": "bfloat16", "shape": list(w.shape)}
        out[name + ".quant_state.bitsandbytes__nf4"] = torch.tensor(list(json.dumps(state).encode()), dtype=torch.uint8)
    save_file(out, os.path.join(a.output, "model.safetensors"), metadata={"format": "pt"})
    save_file(adapter, os.path.join(a.output, "loftq_init", "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    if a.backbone == "bnb4":
        cfg["quantization_config"] = {
            "quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
            "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": False,
            "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8",
            "llm_int8_threshold": 6.0, "llm_int8_skip_modules": None, "llm_int8_has_fp16_weight": False,
            "llm_int8_enable_fp32_cpu_offload": False, "_load_in_4bit": True, "_load_in_8bit": False}
    with open(os.path.join(a.output, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    acfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": a.model, "r": a.rank,
            "lora_alpha": a.lora_alpha, "lora_dropout": 0.0, "target_modules": list(TARGETS),
            "init_lora_weights": True, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
            "modules_to_save": None, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
            "loftq_config": {"loftq_bits": 4, "loftq_iter": 1}}
    with open(os.path.join(a.output, "loftq_init", "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=2)
    readme = os.path.join(a.model, "README.md")
    if os.path.exists(readme):
        shutil.copy(readme, a.output)


if __name__ == "__main__":
    main()
