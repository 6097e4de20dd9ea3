#!/usr/bin/python3
"""Check a `loftq export` folder against spec/FORMATS.md, written from the spec (not the code).

  check_export.py --output DIR --model DIR --work RUN.h5 --backbone bf16|fp16|fp32|bnb4
                  [--adapter-dtype float32] [--rank R] [--alpha A]

Checks (any failure: one line on stderr, exit 1):
  section 5: every .safetensors file (backbone shards, adapter) obeys every rule: header length,
    UTF-8 JSON padded with trailing spaces to a multiple of 8, no duplicate names, known dtypes,
    data offsets tiling the buffer exactly, e - b == numel * itemsize, 8 + N + last e == size,
    metadata {"format": "pt"}; shard names model-0000i-of-0000K.safetensors and the index's
    total_size / weight_map (or a single model.safetensors and no index).
  section 4: adapter keys, shapes [r, in] / [out, r], adapter dtype, adapter_config.json fields
    exactly as listed with the run's r, lora_alpha, rslora, bits and iterations.
  section 2: bnb4 tensors (names, dtypes, shapes, quant_map = the NF4/FP4 table, quant_state JSON
    text, nested tensors) and config.json's quantization_config, field for field; section 7: an
    nf2 matrix in a bnb4 backbone is the NF4 codes of its NF2 values.
  content: non-target tensors byte-identical to the input's; target codes / absmax / adapter A, B
    equal to the run file's; a float backbone holds dtype(table[code] * absmax) of the run's codes.
"""
import argparse
import glob
import json
import mmap
import os
import re
import struct
import sys

import h5py
import numpy as np

ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
            "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
FP4 = [v / 12 for v in [0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3]]
NF4_OF_NF2 = np.array([0, 7, 11, 15], np.uint8)  # section 7: NF2's values are NF4's codes 0, 7, 11, 15
ADAPTER_FIELDS = {"peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout",
                  "target_modules", "init_lora_weights", "bias", "fan_in_fan_out", "inference_mode",
                  "modules_to_save", "use_rslora", "rank_pattern", "alpha_pattern", "loftq_config"}
TORCH = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
ST_DTYPE = {"bf16": "BF16", "fp16": "F16", "fp32": "F32", "float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def fail(msg):
    print(f"check_export: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate key in {keys}")
    return dict(pairs)


def read_safetensors(path):
    """Header dict (tensor name -> info), metadata, and a function giving a tensor's bytes."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(path) else b""
    if len(data) < 8:
        fail(f"{path}: shorter than 8 bytes")
    n = struct.unpack("<Q", data[:8])[0]
    if n > 100_000_000 or 8 + n > len(data):
        fail(f"{path}: header length {n}")
    text = bytes(data[8:8 + n]).decode("utf-8")
    if (8 + n) % 8 != 0:
        fail(f"{path}: 8 + N = {8 + n} is not a multiple of 8")
    stripped = text.rstrip(" ")
    if not stripped.endswith("}") or any(c in stripped[-1:] for c in "\t\n"):
        fail(f"{path}: header not JSON followed by spaces")
    try:
        header = json.loads(stripped, object_pairs_hook=no_duplicates)
    except ValueError as e:
        fail(f"{path}: header JSON: {e}")
    meta = header.pop("__metadata__", None)
    if meta != {"format": "pt"}:
        fail(f"{path}: metadata {meta}")
    spans = []
    for name, t in header.items():
        if set(t) != {"dtype", "shape", "data_offsets"}:
            fail(f"{path}: {name}: fields {sorted(t)}")
        if t["dtype"] not in ITEMSIZE:
            fail(f"{path}: {name}: dtype {t['dtype']}")
        if any((not isinstance(d, int)) or d < 0 for d in t["shape"]):
            fail(f"{path}: {name}: shape {t['shape']}")
        b, e = t["data_offsets"]
        if e - b != int(np.prod(t["shape"], dtype=np.int64)) * ITEMSIZE[t["dtype"]]:
            fail(f"{path}: {name}: {e - b} bytes for {t['dtype']} {t['shape']}")
        spans.append((b, e, name))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            fail(f"{path}: {name}: starts at {b}, expected {pos} (hole or overlap)")
        pos = e
    if 8 + n + pos != len(data):
        fail(f"{path}: 8 + N + last end = {8 + n + pos} != file size {len(data)}")
    base = 8 + n
    return header, lambda name: data[base + header[name]["data_offsets"][0]: base + header[name]["data_offsets"][1]]


def read_folder(folder, what):
    """All tensors of a checkpoint folder: name -> (shard path, info, bytes getter); checks shards/index."""
    index_path = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    tensors = {}
    shard_of = {}
    for f in files:
        header, get = read_safetensors(f)
        for name, info in header.items():
            if name in tensors:
                fail(f"{what}: {name} in two shards")
            tensors[name] = (info, get)
            shard_of[name] = os.path.basename(f)
    if os.path.exists(index_path):
        k = len(files)
        want = {f"model-{i:05d}-of-{k:05d}.safetensors" for i in range(1, k + 1)}
        if {os.path.basename(f) for f in files} != want:
            fail(f"{what}: shard names {[os.path.basename(f) for f in files]}")
        index = json.load(open(index_path), object_pairs_hook=no_duplicates)
        if set(index) != {"metadata", "weight_map"}:
            fail(f"{what}: index keys {sorted(index)}")
        total = sum(info["data_offsets"][1] - info["data_offsets"][0] for info, _ in tensors.values())
        if index["metadata"].get("total_size") != total:
            fail(f"{what}: index total_size {index['metadata'].get('total_size')} != {total}")
        if index["weight_map"] != shard_of:
            fail(f"{what}: index weight_map does not match the shards")
    elif [os.path.basename(f) for f in files] != ["model.safetensors"]:
        fail(f"{what}: no index, files {files}")
    return tensors, shard_of


def bf16_round(x):
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return (b.astype(np.uint32) << 16).view(np.float32)


def as_float(info, raw):
    if info["dtype"] == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    if info["dtype"] == "F16":
        return np.frombuffer(raw, np.float16).astype(np.float32)
    return np.frombuffer(raw, np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--backbone", required=True, choices=["bf16", "fp16", "fp32", "bnb4"])
    ap.add_argument("--adapter-dtype", default="float32")
    a = ap.parse_args()

    run = h5py.File(a.work, "r")
    opts = json.loads(run.attrs["options"])
    mats = run["matrices"]
    targets = {g: mats[g] for g in mats}
    out, out_shard = read_folder(a.output, a.output)
    inp, _ = read_folder(a.model, a.model)

    # config.json
    cfg_in = json.load(open(os.path.join(a.model, "config.json")))
    cfg_out = json.load(open(os.path.join(a.output, "config.json")))
    model_dtype = cfg_in.get("torch_dtype", "float32")
    extra = {k: v for k, v in cfg_out.items() if cfg_in.get(k) != v}
    if set(cfg_in) - set(cfg_out):
        fail(f"config.json lost {sorted(set(cfg_in) - set(cfg_out))}")
    if a.backbone == "bnb4":
        dq = bool(opts["double-quant"])
        qt = "fp4" if opts["quant"] == "fp4" else "nf4"
        want = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
                "bnb_4bit_quant_type": qt, "bnb_4bit_use_double_quant": dq, "bnb_4bit_compute_dtype": model_dtype,
                "bnb_4bit_quant_storage": "uint8", "llm_int8_threshold": 6.0, "llm_int8_skip_modules": None,
                "llm_int8_has_fp16_weight": False, "llm_int8_enable_fp32_cpu_offload": False,
                "_load_in_4bit": True, "_load_in_8bit": False}
        if extra != {"quantization_config": want}:
            fail(f"config.json differs from the input by {extra}")
    else:
        keeps = TORCH[a.backbone] == model_dtype or model_dtype == "float32"
        allowed = {} if keeps else {"torch_dtype": TORCH[a.backbone]}
        if extra != allowed:
            fail(f"config.json differs from the input by {extra}")

    # Backbone tensors.
    expected = set(inp)
    for name, (info, get) in inp.items():
        if name in targets:
            continue
        if name not in out:
            fail(f"non-target {name} missing from the output")
        oinfo, oget = out[name]
        if (oinfo["dtype"], oinfo["shape"]) != (info["dtype"], info["shape"]) or oget(name) != get(name):
            fail(f"non-target {name} is not byte-identical to the input")
    for name, grp in targets.items():
        rows, cols = int(grp.attrs["rows"]), int(grp.attrs["cols"])
        n = rows * cols
        codes = grp["codes"][()]
        fmt = grp.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        bs = int(grp.attrs["blocksize"])
        nblocks = -(-n // bs)
        dq = bool(grp.attrs["double_quant"])
        if a.backbone == "bnb4":
            p = name
            want_codes = codes.tobytes()
            if fmt == "nf2":  # section 7: stored as the NF4 codes of the same values, high nibble first
                c2 = np.stack([(codes >> (2 * j)) & 3 for j in range(4)], axis=1).reshape(-1)[:n]
                c4 = NF4_OF_NF2[c2]
                want_codes = ((c4[0::2] << 4) | c4[1::2]).astype(np.uint8).tobytes()
                fmt = "nf4"
            names = [p, p + ".absmax", p + ".quant_map", p + ".quant_state.bitsandbytes__" + fmt]
            if dq:
                names += [p + ".nested_absmax", p + ".nested_quant_map"]
            for k in names:
                if k not in out:
                    fail(f"bnb4: {k} missing")
                if out_shard[k] != out_shard[p]:
                    fail(f"bnb4: {k} is not in the shard of {p} (transformers collects the components per shard)")
                expected.add(k)
            info, get = out[p]
            if info["dtype"] != "U8" or info["shape"] != [(n + 1) // 2, 1] or get(p) != want_codes:
                fail(f"bnb4: {p} is not the run's packed codes as U8 [{(n + 1) // 2}, 1]")
            info, get = out[p + ".absmax"]
            want_abs = grp["absmax"][()]
            if info["dtype"] != ("U8" if dq else "F32") or info["shape"] != [nblocks] or get(p + ".absmax") != want_abs.tobytes():
                fail(f"bnb4: {p}.absmax differs from the run's")
            info, get = out[p + ".quant_map"]
            table = np.array(NF4 if fmt == "nf4" else FP4, np.float32)
            if info["dtype"] != "F32" or info["shape"] != [16] or get(p + ".quant_map") != table.tobytes():
                fail(f"bnb4: {p}.quant_map is not the {fmt} table")
            sk = p + ".quant_state.bitsandbytes__" + fmt
            state_text = out[sk][1](sk).decode("utf-8")
            state = json.loads(state_text, object_pairs_hook=no_duplicates)
            keys = ["quant_type", "blocksize", "dtype", "shape"] + (["nested_blocksize", "nested_dtype", "nested_offset"] if dq else [])
            if list(state) != keys or state["quant_type"] != fmt or state["blocksize"] != bs or \
                    state["dtype"] != model_dtype or state["shape"] != [rows, cols]:
                fail(f"bnb4: {sk} = {state_text}")
            if not state_text.startswith('{"quant_type": "'):
                fail(f"bnb4: {sk} is not json.dumps text: {state_text}")
            if dq:
                if state["nested_blocksize"] != 256 or state["nested_dtype"] != "float32" or \
                        np.float32(state["nested_offset"]) != grp["nested_offset"][()]:
                    fail(f"bnb4: {sk} nested fields {state_text}")
                info, get = out[p + ".nested_absmax"]
                if info["dtype"] != "F32" or info["shape"] != [-(-nblocks // 256)] or \
                        get(p + ".nested_absmax") != grp["nested_absmax"][()].tobytes():
                    fail(f"bnb4: {p}.nested_absmax differs from the run's")
                if out[p + ".nested_quant_map"][0]["shape"] != [256]:
                    fail(f"bnb4: {p}.nested_quant_map shape")
        else:
            info, get = out[name]
            if info["dtype"] != ST_DTYPE[a.backbone] or info["shape"] != [rows, cols]:
                fail(f"{name}: {info['dtype']} {info['shape']}, expected {ST_DTYPE[a.backbone]} [{rows}, {cols}]")
            if fmt in ("nf4", "fp4") and not dq:
                hi, lo = codes >> 4, codes & 15
                c = np.stack([hi, lo], axis=1).reshape(-1)[:n]
                table = np.array(NF4 if fmt == "nf4" else FP4, np.float32)
                absmax = grp["absmax"][()].astype(np.float32)
                vals = table[c] * np.repeat(absmax, bs)[:n]
                if a.backbone == "bf16":
                    vals = bf16_round(vals)
                elif a.backbone == "fp16":
                    vals = vals.astype(np.float16).astype(np.float32)
                if not np.array_equal(as_float(info, get(name)), vals):
                    fail(f"{name}: stored values are not {a.backbone}(table[code] * absmax) of the run's codes")

    if set(out) != expected:
        fail(f"output tensors differ from the expected set: extra {sorted(set(out) - expected)[:5]}, "
             f"missing {sorted(expected - set(out))[:5]}")

    # Adapter (FORMATS.md 4).
    ad_header, ad_get = read_safetensors(os.path.join(a.output, "loftq_init", "adapter_model.safetensors"))
    acfg = json.load(open(os.path.join(a.output, "loftq_init", "adapter_config.json")), object_pairs_hook=no_duplicates)
    if set(acfg) != ADAPTER_FIELDS:
        fail(f"adapter_config.json fields: extra {set(acfg) - ADAPTER_FIELDS}, missing {ADAPTER_FIELDS - set(acfg)}")
    r = int(opts["rank"])
    checks = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": opts["lora-alpha"],
              "init_lora_weights": True, "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
              "use_rslora": bool(opts["rslora"]), "rank_pattern": {}, "alpha_pattern": {},
              "loftq_config": {"loftq_bits": opts["bits"], "loftq_iter": opts["iters"]}}
    for k, v in checks.items():
        if acfg[k] != v or type(acfg[k]) is bool and not isinstance(v, bool):
            fail(f"adapter_config.json {k} = {acfg[k]!r}, expected {v!r}")
    if not isinstance(acfg["inference_mode"], bool) or not isinstance(acfg["lora_dropout"], (int, float)):
        fail("adapter_config.json inference_mode / lora_dropout types")
    if not isinstance(acfg["base_model_name_or_path"], str) or not acfg["base_model_name_or_path"]:
        fail("adapter_config.json base_model_name_or_path")
    modules = sorted({n[:-len(".weight")].rsplit(".", 1)[-1] for n in targets})
    if acfg["target_modules"] != modules:
        fail(f"adapter_config.json target_modules {acfg['target_modules']} != {modules}")
    want_keys = set()
    for name, grp in targets.items():
        path = name[:-len(".weight")]
        rows, cols = int(grp.attrs["rows"]), int(grp.attrs["cols"])
        for which, shape, ds in (("A", [r, cols], "A"), ("B", [rows, r], "B")):
            key = f"base_model.model.{path}.lora_{which}.weight"
            want_keys.add(key)
            if key not in ad_header:
                fail(f"adapter: {key} missing")
            info = ad_header[key]
            if info["dtype"] != ST_DTYPE[a.adapter_dtype] or info["shape"] != shape:
                fail(f"adapter: {key} is {info['dtype']} {info['shape']}, expected {ST_DTYPE[a.adapter_dtype]} {shape}")
            stored = as_float(info, ad_get(key))
            ref = grp[ds][()].astype(np.float32).reshape(-1)
            if a.adapter_dtype == "bfloat16":
                ref = bf16_round(ref)
            elif a.adapter_dtype == "float16":
                ref = ref.astype(np.float16).astype(np.float32)
            if not np.array_equal(stored, ref):
                fail(f"adapter: {key} differs from the run file's {ds}")
    if set(ad_header) != want_keys:
        fail(f"adapter: unexpected keys {sorted(set(ad_header) - want_keys)[:5]}")
    for f in os.listdir(a.model):
        if f.startswith("tokenizer") or f in ("special_tokens_map.json", "generation_config.json"):
            if open(os.path.join(a.model, f), "rb").read() != open(os.path.join(a.output, f), "rb").read():
                fail(f"{f} not copied byte for byte")
    report = json.load(open(os.path.join(a.output, "report.json")))
    if len(report["matrices"]) != len(targets) or report["totals"]["matrices"] != len(targets):
        fail("report.json matrices")
    print(f"check_export: OK {a.output} ({a.backbone}, {len(targets)} targets, {len(out)} backbone tensors)")


if __name__ == "__main__":
    main()
