"""What the real clients hold of a checkpoint (issue #12): load FOLDER with transformers +
bitsandbytes 4-bit NF4 and print, per module, whether it became Linear4bit, stayed an nn.Linear,
or is a parameter that stays 16-bit; and what PEFT's all-linear targets. Run in the client venv.

    python held_modules.py FOLDER [--json OUT]
"""
import argparse
import json
import os
import sys


def held(folder):
    import bitsandbytes as bnb
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers
    from peft import LoraConfig
    names = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(folder, f), "pt") as h:
                for k in h.keys():
                    names[k] = list(h.get_slice(k).get_shape())
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=q)
    four, plain, params16 = [], [], []
    for name, mod in model.named_modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            four.append(name)
        elif isinstance(mod, torch.nn.Linear):
            plain.append(name)
    for name, p in model.named_parameters():
        mod = name.rsplit(".", 1)[0]
        if mod not in four and p.dim() >= 2:
            params16.append([name, list(p.shape), str(p.dtype)])
    cfg = LoraConfig(target_modules="all-linear")
    cfg = _maybe_include_all_linear_layers(cfg, model)
    return dict(model_type=model.config.model_type, linear4bit=four, linear=plain,
                params_2d_not_4bit=params16, all_linear=sorted(cfg.target_modules),
                checkpoint=names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--json")
    a = ap.parse_args()
    r = held(a.folder)
    print(f"{r['model_type']}: Linear4bit {len(r['linear4bit'])}: {r['linear4bit'][:12]}")
    print(f"  nn.Linear kept: {r['linear']}")
    print(f"  2-D params not 4-bit: {r['params_2d_not_4bit'][:8]}")
    print(f"  PEFT all-linear: {r['all_linear']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
