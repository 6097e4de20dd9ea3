"""`loftq merge` against PEFT's own merge, with the real transformers + PEFT + bitsandbytes.

  make-mistral --output DIR     a small Mistral model written by transformers' save_pretrained
  train --base OUT --adapter DIR
      loads the `loftq run` folder OUT as a user does (bnb4 as is; a bf16 backbone with
      BitsAndBytesConfig(load_in_4bit=True) as its report.json says), PeftModel.from_pretrained
      (OUT/loftq_init, is_trainable=True), a few AdamW steps on random tokens, save_pretrained(DIR)
  check --base OUT --adapter DIR --merged M [--json F]
      the reference: the same base loaded as a user does, model.dequantize(dtype=float32) (the
      weights transformers holds, in float32), PeftModel.from_pretrained(adapter) and PEFT's
      merge_and_unload() (float32; cast to bf16 for (a), (b)). Then, per weight of M (our `loftq merge --to bf16`):
      (a) every merged weight within bf16 rounding of the reference: |d| <= one bf16 ulp of the larger
          of the two + 2^-20 (|W| + |s B A|) (both sum W + s B A in float32, in another order, then cast);
      (b) every other tensor equal to the reference;
      (c) logits (float32) of M and of PEFT's merged model on 16 fixed tokens within 1e-2 of their
          scale, and under a quarter of what the adapter itself changes (so the check can fail).
  check-bnb4 --base OUT --adapter DIR --merged M   M = `loftq merge --to bnb4` (see check_bnb4)
Prints one [PASS]/[FAIL] line per check; exit 1 on any FAIL.
"""
import argparse, json, os, sys

import torch


def load_held(out):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    cfg = json.load(open(os.path.join(out, "config.json")))
    if "quantization_config" in cfg:
        return AutoModelForCausalLM.from_pretrained(out)
    load = json.load(open(os.path.join(out, "report.json")))["load"]
    dt = getattr(torch, load["bnb_4bit_compute_dtype"])
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=load["bnb_4bit_quant_type"],
                           bnb_4bit_use_double_quant=load["bnb_4bit_use_double_quant"], bnb_4bit_compute_dtype=dt)
    return AutoModelForCausalLM.from_pretrained(out, quantization_config=q, dtype=dt)


def make_mistral(a):
    from transformers import MistralConfig, MistralForCausalLM
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=320, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                        sliding_window=None, tie_word_embeddings=False)
    model = MistralForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(a.output)


def train(a):
    from peft import PeftModel
    torch.manual_seed(1)
    base = load_held(a.base)
    model = PeftModel.from_pretrained(base, os.path.join(a.base, "loftq_init"), is_trainable=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    vocab = base.config.vocab_size
    for step in range(a.steps):
        ids = torch.randint(0, vocab, (2, 24))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        print(f"step {step}: loss {loss.item():.4f}")
    model.save_pretrained(a.adapter)


def check(a):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    results = []

    def report(ok, what):
        results.append(ok)
        print(f"[{'PASS' if ok else 'FAIL'}] {what}")

    held = load_held(a.base)
    base = held.dequantize(dtype=torch.float32).float().eval()  # the 16-bit rest widened exactly
    ids = torch.arange(16).unsqueeze(0) % base.config.vocab_size + 3
    with torch.no_grad():
        lb = base(ids).logits.float()
    held_sd = {k: v.clone() for k, v in base.state_dict().items()}
    peft = PeftModel.from_pretrained(base, a.adapter)
    scalings = {n: m.scaling["default"] for n, m in peft.named_modules()
                if isinstance(getattr(m, "scaling", None), dict) and "default" in m.scaling}
    ref = peft.merge_and_unload().eval()  # float32
    ref_f32 = ref.state_dict()
    ref_sd = {k: v.to(torch.bfloat16) for k, v in ref_f32.items()}
    ours = {}
    for f in sorted(os.listdir(a.merged)):
        if f.endswith(".safetensors"):
            ours.update(load_file(os.path.join(a.merged, f)))
    merged_names = {n.split("base_model.model.", 1)[1] + ".weight" for n in scalings}
    report(set(ours) == set(ref_sd) or set(ours) == set(ref_sd) - {"lm_head.weight"},
           f"tensor names: ours {len(ours)}, PEFT's {len(ref_sd)}")
    worst_ulps, exact, total, others_equal = 0.0, 0, 0, True
    for name, theirs in ref_sd.items():
        if name not in ours:
            continue
        mine = ours[name]
        if name in merged_names:
            t = theirs.float()
            big = torch.maximum(t.abs(), mine.float().abs())  # the ulp of the larger binade of the two
            ulp = torch.where(big == 0, torch.zeros_like(t), torch.pow(2.0, torch.floor(torch.log2(big)) - 7))
            # + float32 rounding of the sum before the cast: a few eps of its terms |W| + |s B A|
            terms = held_sd[name].abs() + (ref_f32[name] - held_sd[name]).abs()
            d = (mine.float() - t).abs() / (ulp + 2.0 ** -20 * terms)
            if d.max().item() > 1.0:
                i = int(d.argmax())
                print(f"  {name}: element {i}: ours {mine.flatten()[i].item()!r}, PEFT's float32 "
                      f"{ref_f32[name].flatten()[i].item()!r} -> bf16 {t.flatten()[i].item()!r}")
            worst_ulps = max(worst_ulps, d.max().item())
            exact += int((mine.float() == t).sum())
            total += t.numel()
        elif not torch.equal(mine.to(theirs.dtype), theirs):
            others_equal = False
            print(f"  differs: {name}")
    report(len(merged_names) > 0 and worst_ulps <= 1.0,
           f"(a) {len(merged_names)} merged weights within bf16 rounding of PEFT's merge_and_unload: worst "
           f"{worst_ulps:.2f} of the bound, {exact}/{total} ({100.0 * exact / max(total, 1):.3f}%) bit-identical")
    report(others_equal, "(b) every other tensor equal to PEFT's")
    model = AutoModelForCausalLM.from_pretrained(a.merged, dtype=torch.float32).eval()
    with torch.no_grad():
        lo, lr = model(ids).logits.float(), ref(ids).logits.float()
    dist = (lo - lr).abs().max().item() / lr.abs().max().item()
    moved = (lb - lr).abs().max().item() / lr.abs().max().item()
    report(dist <= 1e-2 and dist < moved / 4,
           f"(c) logits (float32) of our merged model vs PEFT's merged model: max difference {dist:.2e} of their "
           f"scale (the adapter itself moves them by {moved:.2e})")
    if a.json:
        json.dump({"worst_ulps": worst_ulps, "bit_identical": exact, "merged_elements": total,
                   "merged_weights": len(merged_names), "logits_distance": dist, "adapter_moves_logits": moved}, open(a.json, "w"), indent=2)
    if not all(results):
        sys.exit(1)
    print("merge_check: passed")


def check_bnb4(a):
    """--to bnb4: our serialized 4-bit model against PEFT's merge_and_unload on the 4-bit base
    (PEFT dequantizes each Linear4bit, adds the delta in the compute dtype and re-quantizes it as
    Params4bit): (d) code bytes equal on >= 99.9%, dequantized weights within 1e-5 (relative
    Frobenius); (e) logits within 1e-2 of their scale."""
    import bitsandbytes as bnb
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    results = []

    def report(ok, what):
        results.append(ok)
        print(f"[{'PASS' if ok else 'FAIL'}] {what}")

    ref = PeftModel.from_pretrained(load_held(a.base), a.adapter).merge_and_unload().eval()
    ours = AutoModelForCausalLM.from_pretrained(a.merged).eval()
    mods = {n: m for n, m in ours.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    refs = {n: m for n, m in ref.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    report(len(mods) > 0 and set(mods) == set(refs), f"4-bit modules: ours {len(mods)}, PEFT's {len(refs)}")
    same = total = 0
    worst = 0.0
    for n, m in mods.items():
        same += int((m.weight.data == refs[n].weight.data).sum())
        total += m.weight.data.numel()
        w = bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state).float()
        r = bnb.functional.dequantize_4bit(refs[n].weight.data, refs[n].weight.quant_state).float()
        worst = max(worst, ((w - r).norm() / r.norm()).item())
    # The codes decide the values; the double-quant offset is a float32 mean of the absmax, which
    # torch sums in another order than loftq (a few float32 ulps: ~1e-7 of the weights).
    report(same >= 0.999 * total and worst <= 1e-5,
           f"(d) {len(mods)} 4-bit weights: {same}/{total} ({100.0 * same / max(total, 1):.3f}%) code bytes equal to "
           f"PEFT's, dequantized within {worst:.2e} (relative)")
    for model in (ours, ref):  # bitsandbytes' AVX512-BF16 CPU repacking rejects some shapes (load_check.py (c))
        for m in model.modules():
            if isinstance(m, bnb.nn.Linear4bit) and (m.out_features % 32 or m.in_features % m.weight.quant_state.blocksize):
                m.support_avx512bf16_for_cpu = False
    ids = torch.arange(16).unsqueeze(0) % ref.config.vocab_size + 3
    with torch.no_grad():
        lo, lr = ours(ids).logits.float(), ref(ids).logits.float()
    dist = (lo - lr).abs().max().item() / lr.abs().max().item()
    report(dist <= 1e-2, f"(e) logits of our 4-bit merged model vs PEFT's: max difference {dist:.2e} of their scale")
    if not all(results):
        sys.exit(1)
    print("merge_check bnb4: passed")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("step", choices=["make-mistral", "train", "check", "check-bnb4"])
    p.add_argument("--output")
    p.add_argument("--base")
    p.add_argument("--adapter")
    p.add_argument("--merged")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args()
    {"make-mistral": make_mistral, "train": train, "check": check, "check-bnb4": check_bnb4}[a.step](a)


if __name__ == "__main__":
    main()
