#!/usr/bin/env python3
"""A "trained" PEFT LoRA adapter for the merge tests, with numpy only (/usr/bin/python3).

--from ADAPTER: the adapter perturbed as a few optimizer steps would move it (A and B + noise
of `--scale` times each tensor's RMS, B = 0 replaced too), its adapter_config.json kept, with
--alpha / --rank-pattern / --alpha-pattern overriding. Without --from: fresh random factors
for --modules of the base model (--base DIR, shapes read from its safetensors headers).
Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (F32, or --dtype BF16) as
PEFT's save_pretrained names them.
"""
import argparse, json, os, struct
import numpy as np


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def read_tensors(path):
    header, base = read_header(path)
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        buf = np.array(raw[base + b: base + e])
        if v["dtype"] == "F32":
            a = buf.view(np.float32)
        elif v["dtype"] == "BF16":
            a = (buf.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif v["dtype"] == "F16":
            a = buf.view(np.float16).astype(np.float32)
        else:
            raise SystemExit(f"{path}: {k} has dtype {v['dtype']}")
        out[k] = a.reshape(v["shape"])
    return out


def base_shapes(folder):
    files = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    shapes = {}
    for f in files:
        h, _ = read_header(os.path.join(folder, f))
        for k, v in h.items():
            if k != "__metadata__":
                shapes[k] = v["shape"]
    return shapes


def to_bf16_bytes(a):
    u = a.astype(np.float32).view(np.uint32)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return u.tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k], dtype=np.float32)
        b = a.tobytes() if dtype == "F32" else to_bf16_bytes(a)
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="src")
    p.add_argument("--base")
    p.add_argument("--modules", default="q_proj,v_proj")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=float)
    p.add_argument("--rank-pattern", default="{}")
    p.add_argument("--alpha-pattern", default="{}")
    p.add_argument("--rslora", action="store_true")
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dtype", default="F32", choices=["F32", "BF16"])
    p.add_argument("--output", required=True)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    rank_pattern = json.loads(a.rank_pattern)
    tensors = {}
    if a.src:
        cfg = json.load(open(os.path.join(a.src, "adapter_config.json")))
        for k, v in read_tensors(os.path.join(a.src, "adapter_model.safetensors")).items():
            rms = float(np.sqrt(np.mean(v.astype(np.float64) ** 2))) or 0.02
            tensors[k] = v + a.scale * rms * rng.standard_normal(v.shape).astype(np.float32)
    else:
        mods = a.modules.split(",")
        cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": a.r, "lora_alpha": 16,
               "target_modules": mods, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
               "use_rslora": False, "use_dora": False, "modules_to_save": None, "init_lora_weights": True,
               "rank_pattern": {}, "alpha_pattern": {}, "base_model_name_or_path": a.base}
        for name, shape in sorted(base_shapes(a.base).items()):
            if not name.endswith(".weight") or name.split(".")[-2] not in mods:
                continue
            path = name[: -len(".weight")]
            r = a.r
            for key, val in rank_pattern.items():
                if path == key or path.endswith("." + key):
                    r = val
                    break
            out_f, in_f = shape
            tensors[f"base_model.model.{path}.lora_A.weight"] = (rng.standard_normal((r, in_f)) / np.sqrt(in_f)).astype(np.float32)
            tensors[f"base_model.model.{path}.lora_B.weight"] = (0.02 * rng.standard_normal((out_f, r))).astype(np.float32)
    if a.alpha is not None:
        cfg["lora_alpha"] = a.alpha
    cfg["rank_pattern"] = {**cfg.get("rank_pattern", {}), **rank_pattern}
    cfg["alpha_pattern"] = {**cfg.get("alpha_pattern", {}), **json.loads(a.alpha_pattern)}
    if a.rslora:
        cfg["use_rslora"] = True
    os.makedirs(a.output, exist_ok=True)
    write_safetensors(os.path.join(a.output, "adapter_model.safetensors"), tensors, a.dtype)
    with open(os.path.join(a.output, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main()
