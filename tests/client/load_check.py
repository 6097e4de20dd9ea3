#!/usr/bin/env python3
"""Load a loftq output folder exactly as a user does, with the real transformers + PEFT +
bitsandbytes (run inside the client venv, launch/client-venv.sh), and check it.

  python tests/client/load_check.py --model ORIG --output OUT [--verify-json F] [--json RESULT]

Loading (printed as "load path: ..."):
  - OUT/config.json has a quantization_config (bnb4 or int8 backbone):
        AutoModelForCausalLM.from_pretrained(OUT)                          as is
  - otherwise, when OUT/report.json's "load" says load_in_8bit (an int8 run, float backbone):
        from_pretrained(OUT, quantization_config=BitsAndBytesConfig(load_in_8bit=True))
  - otherwise (bf16/fp16/fp32 backbone), when bitsandbytes quantizes 4-bit on this CPU:
        from_pretrained(OUT, quantization_config=BitsAndBytesConfig(load_in_4bit=True,
            bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
            bnb_4bit_compute_dtype=--compute-dtype))                         re-quantized at load
    else the stored float weights as they are.
  then PeftModel.from_pretrained(base, OUT, subfolder="loftq_init").

Checks (exit status 1 when any fails, 2 for a bad argument or an unloadable folder):
  (a) per target module, the base weight transformers holds (Params4bit / Int8Params dequantized
      by bitsandbytes in float32, or the plain weight) reproduces `loftq verify --json`:
      ||W - Q - s B A|| / ||W|| = loftq_error, and bitsandbytes' own quantization of W gives
      qlora_error (relative 1e-5; an nf2 matrix, held as nf4: LoftQ's NF2 of W). For a bnb4 folder the held codes must also decode
      (spec: first element in the high nibble) to exactly the values stored in the file; for
      an int8 folder the held weight must equal the file's weight * SCB / 127.
      Without --verify-json: held Q + s B A no worse than bitsandbytes' QLoRA of W, per matrix.
  (b) PEFT's scaling = lora_alpha / r (sqrt(r) with use_rslora, rank/alpha_pattern applied)
      and the lora_A / lora_B it holds equal the adapter file's tensors bit for bit; every
      adapter tensor is used and every target module has one.
  (c) on a fixed prompt, ||logits(adapter) - logits(orig)|| < ||logits(backbone) - logits(orig)||
      (relative Frobenius distances, all three printed).
"""
import argparse
import copy
import json
import math
import os
import sys

import torch
from safetensors import safe_open

DEFAULT_PROMPT = [1, 15, 42, 300, 7, 99, 250, 3, 411, 64, 128, 500, 2, 77, 310, 45]
REL_TOL = 1e-5
# An error that float32 rounding alone decides (a rank-r adapter reproducing a matrix of rank <= r,
# e.g. qwen2_moe's [1, H] shared_expert_gate: ~1e-8 of ||W||) is compared absolutely: to within
# REL_TOL * ERROR_FLOOR = 1e-7 of ||W||, float32's rounding of a dot product.
ERROR_FLOOR = 1e-2
# Double quantization: bitsandbytes' offset is torch's float32 mean of the absmax and its 8-bit
# map is built in float32 (1 ulp from a correctly rounded one); either shifts an 8-bit absmax
# code now and then, so its QLoRA of W differs from loftq's in the 5th digit (both load exactly).
NESTED_QLORA_TOL = 1e-4


class CheckFailed(Exception):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="original model folder (float weights)")
    p.add_argument("--output", required=True, help="loftq output folder")
    p.add_argument("--verify-json", help="report of `loftq verify --json` for this output")
    p.add_argument("--prompt", default=",".join(map(str, DEFAULT_PROMPT)),
                   help="comma-separated token ids (no tokenizer needed)")
    p.add_argument("--compute-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                   help="bnb_4bit_compute_dtype when re-quantizing a float backbone (users: bfloat16)")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def bnb_cpu_4bit():
    """(works, why): does this bitsandbytes quantize NF4 and run a Linear4bit on the CPU?"""
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnbf
        w = torch.randn(32, 64)
        q, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
        back = bnbf.dequantize_4bit(q, state)
        lin = bnb.nn.Linear4bit(64, 32, bias=False, quant_type="nf4", compute_dtype=torch.float32)
        lin.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4").to("cpu")
        y = lin(torch.randn(2, 64))
        rel = float((w - back).norm() / w.norm())
        if y.shape != (2, 32) or not rel < 0.2:
            return False, f"CPU 4-bit gave a wrong result (relative error {rel:.3g})"
        return True, f"bitsandbytes {bnb.__version__} quantizes NF4 on the CPU"
    except Exception as e:  # any failure means "not supported here"; say which
        return False, f"bitsandbytes 4-bit on the CPU failed: {type(e).__name__}: {e}"


def held_weight(layer):
    """float32 weight a (possibly 4-bit or LLM.int8) linear layer holds, dequantized by bitsandbytes."""
    w = layer.weight
    import bitsandbytes.functional as bnbf
    if w.dtype == torch.int8:
        return bnbf.int8_vectorwise_dequant(w.data, w.SCB).float(), "Int8Params (LLM.int8)"
    state = getattr(w, "quant_state", None)
    if state is None:
        return w.detach().float(), "plain " + str(w.dtype).replace("torch.", "")
    st32 = copy.copy(state)
    st32.dtype = torch.float32  # bnb casts to quant_state.dtype after table * absmax; keep float32
    return bnbf.dequantize_4bit(w.data, st32).float(), f"Params4bit {state.quant_type}/{state.blocksize}"


NF2 = [-1.0, 0.0, 0.33791524171829224, 1.0]


def loftq_nf2(W, blocksize):
    """LoftQ's NF2 quantize + dequantize of W (FORMATS section 3): y = x / absmax per block of the
    flattened W, nearest NF2 value (ties to the lower code). QLoRA at 2 bits: bitsandbytes has no
    2-bit quantizer, and an nf2 matrix loads through load_in_4bit nf4 holding exactly these values."""
    table = torch.tensor(NF2, dtype=torch.float32)
    blocks = W.float().reshape(-1, blocksize)
    absmax = blocks.abs().amax(1, keepdim=True)
    codes = (blocks / absmax).unsqueeze(-1).sub(table).abs().argmin(-1)
    return (table[codes] * absmax).reshape(W.shape)


def stored_tensor_reader(out_dir):
    """get(name): a tensor of the output folder's backbone, straight from its files."""
    index = os.path.join(out_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            wmap = json.load(f)["weight_map"]
        files = {k: os.path.join(out_dir, v) for k, v in wmap.items()}
    else:
        files = {}
        path = os.path.join(out_dir, "model.safetensors")
        with safe_open(path, "pt") as f:
            files = {k: path for k in f.keys()}

    def get(name):
        if name not in files:
            raise CheckFailed(f"{out_dir}: tensor {name} missing")
        with safe_open(files[name], "pt") as f:
            return f.get_tensor(name)

    return get, files


def decode_stored_int8(out_dir, key):
    """Q decoded straight from the output files by the spec (FORMATS section 6): weight * SCB / 127."""
    get, _ = stored_tensor_reader(out_dir)
    cb = get(key)
    if cb.dtype != torch.int8:
        raise CheckFailed(f"{out_dir}: {key} is {cb.dtype}, not int8")
    scb = get(key.removesuffix(".weight") + ".SCB").float()
    return cb.float() * scb[:, None] * torch.tensor(7.874015718698502e-3, dtype=torch.float32)


def decode_stored_bnb4(out_dir, key, shape):
    """Q decoded straight from the output files by the spec (FORMATS section 2), not by bnb."""
    get, files = stored_tensor_reader(out_dir)
    state_key = next((k for k in files if k.startswith(key + ".quant_state.bitsandbytes__")), None)
    if state_key is None:
        raise CheckFailed(f"{out_dir}: no {key}.quant_state.bitsandbytes__* tensor")
    state = json.loads(bytes(get(state_key).tolist()).decode("utf-8"))
    packed = get(key).flatten().to(torch.int32)
    codes = torch.stack([packed >> 4, packed & 15], 1).flatten()
    n = shape[0] * shape[1]
    qmap = get(key + ".quant_map").float()
    if state.get("nested_offset") is not None:
        nested = get(key + ".nested_absmax").float()
        nmap = get(key + ".nested_quant_map").float()
        acodes = get(key + ".absmax").to(torch.int64)
        nb = state["nested_blocksize"]
        absmax = nmap[acodes] * nested.repeat_interleave(nb)[: acodes.numel()] + state["nested_offset"]
    else:
        absmax = get(key + ".absmax").float()
    bs = state["blocksize"]
    scale = absmax.repeat_interleave(bs)[:n]
    return (qmap[codes[:n].long()] * scale).reshape(shape), state


def rel(a, b_norm):
    return float(a.double().norm() / b_norm)


def main(argv=None):
    """Run every check on one folder (argv as on the command line); 0 passed, 1 failed, 2 bad input."""
    args = parse_args(argv)
    try:
        prompt = [int(t) for t in args.prompt.split(",")]
    except ValueError:
        print(f"load_check: --prompt: not comma-separated integers: {args.prompt}", file=sys.stderr)
        return 2
    for d in (args.model, args.output):
        if not os.path.isfile(os.path.join(d, "config.json")):
            print(f"load_check: {d}/config.json: missing", file=sys.stderr)
            return 2

    import bitsandbytes
    import peft
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__}
    print("versions: " + " ".join(f"{k} {v}" for k, v in versions.items()))
    result = {"model": args.model, "output": args.output, "versions": versions, "checks": {}}
    failures = []

    def check(name, ok, line):
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {line}")
        result["checks"][name] = {"ok": bool(ok), "detail": line}
        if not ok:
            failures.append(name)

    with open(os.path.join(args.output, "config.json")) as f:
        out_cfg = json.load(f)
    with open(os.path.join(args.output, "loftq_init", "adapter_config.json")) as f:
        acfg = json.load(f)
    cpu4, why = bnb_cpu_4bit()
    print(f"bitsandbytes CPU 4-bit: {'yes' if cpu4 else 'no'} ({why})")
    compute = getattr(torch, args.compute_dtype)

    report_path = os.path.join(args.output, "report.json")
    load, formats = {}, {}
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
        load = report.get("load", {})
        formats = {m["name"].removesuffix(".weight"): (m["format"], m["blocksize"]) for m in report.get("matrices", [])}
    qc = out_cfg.get("quantization_config") or {}
    orig = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    if qc.get("load_in_8bit"):
        path = "int8 folder loaded as is (serialized LLM.int8 weight + SCB, no re-quantization)"
        base = AutoModelForCausalLM.from_pretrained(args.output)
    elif qc:
        path = "bnb4 folder loaded as is (serialized 4-bit weights, no re-quantization)"
        base = AutoModelForCausalLM.from_pretrained(args.output)
    elif load.get("load_in_8bit"):
        path = "float folder re-quantized by bitsandbytes at load (load_in_8bit: LLM.int8, one scale per row)"
        base = AutoModelForCausalLM.from_pretrained(args.output,
                                                    quantization_config=BitsAndBytesConfig(load_in_8bit=True))
    elif cpu4:
        path = (f"float folder re-quantized by bitsandbytes at load on the CPU (nf4, blocksize 64, "
                f"no double quant)")
        bnb_cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                     bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype=compute)
        base = AutoModelForCausalLM.from_pretrained(args.output, quantization_config=bnb_cfg)
    else:
        path = "float folder loaded as stored (no bitsandbytes 4-bit on this CPU)"
        base = AutoModelForCausalLM.from_pretrained(args.output)
    emb = base.get_input_embeddings().weight.dtype
    computes = {str(m.compute_dtype) for m in base.modules() if hasattr(m, "compute_dtype")}
    path += (f"; embeddings/norms held as {str(emb).replace('torch.', '')}"
             + (f", 4-bit compute {', '.join(sorted(computes)).replace('torch.', '')}" if computes else ""))
    print(f"load path: {path}")
    result["load_path"] = path
    import bitsandbytes as bnb
    four_bit = {n for n, m in base.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    model = PeftModel.from_pretrained(base, args.output, subfolder="loftq_init").eval()

    # (b) adapter tensors and scaling as PEFT holds them
    adapter_file = os.path.join(args.output, "loftq_init", "adapter_model.safetensors")
    with safe_open(adapter_file, "pt") as f:
        file_tensors = {k: f.get_tensor(k) for k in f.keys()}
    from peft.tuners.lora import LoraLayer
    lora_modules = {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    used, bad_scaling, bad_weights, missing = set(), [], [], []
    for name, m in lora_modules.items():
        r = m.r["default"]
        short = name.split("base_model.model.", 1)[-1]
        rank = next((v for k, v in acfg.get("rank_pattern", {}).items()
                     if short == k or short.endswith("." + k)), acfg["r"])
        alpha = next((v for k, v in acfg.get("alpha_pattern", {}).items()
                      if short == k or short.endswith("." + k)), acfg["lora_alpha"])
        want = alpha / (math.sqrt(rank) if acfg.get("use_rslora") else rank)
        if r != rank or abs(m.scaling["default"] - want) > 1e-12 * want:
            bad_scaling.append(f"{short}: r {r} scaling {m.scaling['default']} (want r {rank}, {want})")
        for ab in ("lora_A", "lora_B"):
            key = f"{name}.{ab}.weight"
            if key not in file_tensors:
                missing.append(key)
                continue
            used.add(key)
            held = getattr(m, ab)["default"].weight.detach()
            if held.shape != file_tensors[key].shape or not torch.equal(held.float(), file_tensors[key].float()):
                bad_weights.append(key)
    unused = sorted(set(file_tensors) - used)
    # Every module the clients hold in 4-bit carries a LoRA (and nothing else does): the targets
    # are exactly what transformers + bitsandbytes quantize (issue #12).
    lora_bases = {n.split("base_model.model.", 1)[-1] for n in lora_modules}
    if four_bit:
        bare, extra = sorted(four_bit - lora_bases), sorted(lora_bases - four_bit)
        check("linear4bit_covered", not bare and not extra,
              f"{len(four_bit)} Linear4bit modules, each with a LoRA"
              + (f"; without one: {bare[:3]}" if bare else "") + (f"; LoRA on a non-4-bit module: {extra[:3]}" if extra else ""))
    check("adapter_scaling", not bad_scaling,
          f"{len(lora_modules)} LoRA modules, scaling lora_alpha/r = {acfg['lora_alpha']}/{acfg['r']}"
          + (f"; wrong: {bad_scaling[:3]}" if bad_scaling else ""))
    check("adapter_weights", not (bad_weights or missing or unused) and lora_modules,
          f"{len(used)} tensors equal the file's" + (f"; differ: {bad_weights[:3]}" if bad_weights else "")
          + (f"; no tensor for: {missing[:3]}" if missing else "")
          + (f"; unused in the file: {unused[:3]}" if unused else ""))

    # (a) base weights as held vs loftq verify
    verify = {}
    if args.verify_json:
        with open(args.verify_json) as f:
            for mrow in json.load(f)["matrices"]:
                verify[mrow["name"].removesuffix(".weight")] = mrow
    orig_sd = orig.state_dict()
    rows, worst_l, worst_q, decode_bad = [], 0.0, 0.0, []
    import bitsandbytes.functional as bnbf
    for name, m in lora_modules.items():
        short = name.split("base_model.model.", 1)[-1]
        W = orig_sd[short + ".weight"].float()
        Q, kind = held_weight(m.base_layer)
        A = m.lora_A["default"].weight.detach().float()
        B = m.lora_B["default"].weight.detach().float()
        s = m.scaling["default"]
        wn = float(W.double().norm())
        row = {"name": short, "shape": list(W.shape), "held": kind,
               "q_error": rel(W - Q, wn), "loftq_error": rel(W.double() - Q.double() - s * (B.double() @ A.double()), wn)}
        if qc:
            if qc.get("load_in_8bit"):
                stored = decode_stored_int8(args.output, short + ".weight")
            else:
                stored, state = decode_stored_bnb4(args.output, short + ".weight", list(W.shape))
            if not torch.equal(stored, Q):
                decode_bad.append(short)
        if "Int8Params" in kind:  # load_in_8bit of the original: Int8Params(W) as transformers does
            p8 = bitsandbytes.nn.Int8Params(W.clone(), requires_grad=False).to("cpu")
            row["qlora_error"] = rel(W - bnbf.int8_vectorwise_dequant(p8.data, p8.SCB).float(), wn)
        if "Params4bit" in kind:
            st = m.base_layer.weight.quant_state
            q, qs = bnbf.quantize_4bit(W, blocksize=st.blocksize, quant_type=st.quant_type,
                                       compress_statistics=st.nested)
            qs.dtype = torch.float32
            row["qlora_error"] = rel(W - bnbf.dequantize_4bit(q, qs), wn)
            fmt, bs = formats.get(short, ("nf4", 64))
            if fmt == "nf2":  # NF2 values held as nf4: QLoRA at 2 bits is NF2 of W
                row["qlora_error"] = rel(W - loftq_nf2(W, bs), wn)
                row["held"] = kind + " (nf2 values)"
        v = verify.get(short)
        if v is not None:
            row["verify_loftq_error"] = v["loftq_error"]
            row["verify_qlora_error"] = v["qlora_error"]
            worst_l = max(worst_l, abs(row["loftq_error"] - v["loftq_error"]) / max(v["loftq_error"], ERROR_FLOOR))
            if "qlora_error" in row:
                state = getattr(m.base_layer.weight, "quant_state", None)
                tol = NESTED_QLORA_TOL if state is not None and state.nested else REL_TOL
                worst_q = max(worst_q, abs(row["qlora_error"] - v["qlora_error"]) / max(v["qlora_error"], 1e-30) / tol)
        rows.append(row)
    result["matrices"] = rows
    held_kinds = {r_["held"] for r_ in rows}
    print(f"base weights held: {', '.join(sorted(held_kinds))}")
    for r_ in rows:
        print(f"  {r_['name']:<40} {'x'.join(map(str, r_['shape'])):>7} ||W-Q||/||W|| {r_['q_error']:.6f}"
              f"  ||W-Q-sBA||/||W|| {r_['loftq_error']:.6f}"
              + (f"  verify {r_['verify_loftq_error']:.6f}" if "verify_loftq_error" in r_ else ""))
    with_q = [r_ for r_ in rows if "qlora_error" in r_]
    worse = [r_["name"] for r_ in with_q if r_["loftq_error"] > r_["qlora_error"] * (1 + REL_TOL)]
    if with_q:
        check("not_worse_than_qlora", not worse and len(with_q) == len(rows),
              f"held Q + s B A is no worse than bitsandbytes' own QLoRA of W on {len(with_q) - len(worse)} of "
              f"{len(rows)} matrices (mean {sum(r_['loftq_error'] for r_ in rows) / len(rows):.6f} vs "
              f"{sum(r_['qlora_error'] for r_ in with_q) / len(with_q):.6f})"
              + (f"; worse: {worse[:3]}" if worse else ""))
    if qc:
        check("held_equals_file", not decode_bad,
              f"{len(rows)} {'int8' if qc.get('load_in_8bit') else '4-bit'} weights held by transformers "
              f"decode exactly as stored"
              + (f"; differ: {decode_bad[:3]}" if decode_bad else ""))
    if args.verify_json:
        absent = [r_["name"] for r_ in rows if "verify_loftq_error" not in r_]
        extra = sorted(set(verify) - {r_["name"] for r_ in rows})
        check("verify_loftq_error", not absent and not extra and worst_l <= REL_TOL,
              f"held Q + PEFT adapter reproduce verify's loftq_error: worst relative difference {worst_l:.2e}"
              + (f"; not in verify: {absent[:3]}" if absent else "")
              + (f"; verify only: {extra[:3]}" if extra else ""))
        if any("qlora_error" in r_ for r_ in rows):
            check("verify_qlora_error", worst_q <= 1,
                  f"bitsandbytes' own quantization of W reproduces verify's qlora_error: worst relative "
                  f"difference {worst_q:.2f} of the tolerance ({REL_TOL:g}; {NESTED_QLORA_TOL:g} double-quantized)")

    # (c) logits on a fixed prompt. bitsandbytes 0.50's AVX512-BF16 CPU path repacks a 4-bit
    # weight at its first forward per row: it asserts out_features % 32 == 0 and needs
    # in_features % blocksize == 0 (stories260K's 172-row gate/up_proj and 172-column down_proj
    # fail it); such layers take bitsandbytes' generic CPU path instead.
    generic = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)
               and getattr(m, "support_avx512bf16_for_cpu", False)
               and (m.out_features % 32 or m.in_features % m.weight.quant_state.blocksize)]
    for n in generic:
        model.get_submodule(n).support_avx512bf16_for_cpu = False
    if generic:
        print(f"note: {len(generic)} Linear4bit layers use bitsandbytes' generic CPU path "
              f"(its AVX512-BF16 repacking rejects their shapes)")
        result["avx512bf16_path_disabled"] = len(generic)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        ref = orig(ids).logits.double()
        with_adapter = model(ids).logits.double()
        with model.disable_adapter():
            backbone = model(ids).logits.double()
    rn = float(ref.norm())
    d_adapter, d_backbone = rel(with_adapter - ref, rn), rel(backbone - ref, rn)
    result["logits"] = {"prompt": prompt, "backbone_vs_orig": d_backbone, "adapter_vs_orig": d_adapter,
                        "adapter_vs_backbone": rel(with_adapter - backbone, rn)}
    check("logits_closer", d_adapter < d_backbone,
          f"||L_adapter-L_orig||/||L_orig|| {d_adapter:.6f} < ||L_backbone-L_orig||/||L_orig|| "
          f"{d_backbone:.6f} (adapter moves logits by {result['logits']['adapter_vs_backbone']:.6f})")

    result["ok"] = not failures
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
    print(f"load_check: {args.output}: " + ("all checks passed" if not failures else f"FAILED {failures}"))
    return 0 if not failures else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"load_check: {e}", file=sys.stderr)
        sys.exit(1)
