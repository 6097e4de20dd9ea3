#!/usr/bin/env python3
"""CPU fine-tuning benchmark (issue #13): eval-loss curves of float LoRA, QLoRA and LoftQ on the
real stories260K, in the client venv (transformers + PEFT + bitsandbytes from PyPI).

  python bench/finetune/finetune.py --model DIR --folders DIR --csv F --meta F [--steps 200 ...]

Run by bench/finetune/run.sh, which first builds with `loftq run` (rank 8) in --folders:
  loftq-<b>   LoftQ, 5 iterations, bf16 backbone (b = 2, 2.5, 3, 4), int8: --quant int8 bf16 backbone
  qlora-<b>   `--iters 1` (its kept iterate is Q = q(W), the plain NF2 / mixed quantization), for the
              bit widths bitsandbytes cannot quantize itself (2, 2.5, 3); its adapter is discarded
Each run (method, bits, seed) loads its base as a user does, fine-tunes a rank-8 LoRA on every
linear layer with AdamW and records the held-out eval loss every --eval-every steps (and at 0).

Data: token ids sampled from the float model itself (temperature 1, from BOS id 1, a fixed
torch.Generator seed), train and eval sets with different seeds, regenerated identically by every
run (their SHA-256 is printed). No tokenizer is involved.

bitsandbytes 0.50.2 CPU traps (top-level README, below its load snippet): on an AVX512-BF16 CPU
its repacked 4-bit path fails on 172-wide layers and, after one eval-mode no_grad forward, passes no
gradient to a Linear4bit's input. Every module with `support_avx512bf16_for_cpu` gets it set to
False right after loading, and check_gradients() asserts, after an eval-mode no_grad forward of the
whole model, that every quantized linear layer passes the right gradient to its input (x.grad =
g @ W as held) and that a train step reaches every lora_B (and every lora_A whose B is not zero).
Any failure exits non-zero with one line starting "finetune: FAIL".
"""
import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time

import torch

BOS = 1
QUIET_LOCK = "/tmp/quiet.lock"  # another engineer's timing benchmarks: wait while it exists


class Fail(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="original float model (stories260K)")
    p.add_argument("--folders", required=True, help="where run.sh wrote the loftq outputs")
    p.add_argument("--csv", required=True, help="write the curves here")
    p.add_argument("--meta", required=True, help="write versions, data digests, settings here (JSON)")
    p.add_argument("--bits", default="2,2.5,3,4,int8")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--seq-len", type=int, default=64, help="tokens per sequence, BOS included")
    p.add_argument("--n-eval", type=int, default=256, help="held-out sequences")
    p.add_argument("--data-seed", type=int, default=1234, help="train set; eval set uses +1")
    p.add_argument("--keep-avx512bf16", action="store_true",
                   help="skip the workaround (to see check_gradients catch the trap; never for results)")
    return p.parse_args()


def wait_quiet():
    """The coordination rule of this machine: no heavy work while /tmp/quiet.lock exists."""
    waited = 0
    while os.path.exists(QUIET_LOCK):
        if waited == 0:
            print(f"waiting: {QUIET_LOCK} exists", flush=True)
        time.sleep(10)
        waited += 10
    if waited:
        print(f"waited {waited} s for {QUIET_LOCK}", flush=True)


@torch.no_grad()
def sample(model, n, seq_len, seed, chunk=512):
    """n sequences of seq_len token ids: BOS, then ancestral samples of the float model (T = 1)."""
    from transformers import DynamicCache
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    out = []
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        ids = torch.full((b, 1), BOS, dtype=torch.long)
        cache = DynamicCache()
        step_in = ids
        for _ in range(seq_len - 1):
            res = model(input_ids=step_in, past_key_values=cache, use_cache=True)
            cache = res.past_key_values
            probs = torch.softmax(res.logits[:, -1, :].float(), dim=-1)
            step_in = torch.multinomial(probs, 1, generator=gen)
            ids = torch.cat([ids, step_in], 1)
        out.append(ids)
    return torch.cat(out)


def digest(t):
    return hashlib.sha256(t.to(torch.int16).numpy().tobytes()).hexdigest()[:16]


def nf4_config():
    from transformers import BitsAndBytesConfig
    # compute dtype float32: the model is float32 and bf16 matmuls on this CPU are no faster;
    # report.json's load block says float32 for this model too
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype=torch.float32)


def int8_config():
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_8bit=True)


def turn_off_avx512bf16(model):
    """The README's workaround for both CPU traps; returns how many modules it changed."""
    n = 0
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load(method, bits, args):
    """(trainable PEFT model, description of the backbone it fine-tunes)."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM
    fresh = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    try:
        if method == "float":
            base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
            what = "original float32"
        elif method == "qlora" and bits in ("4", "int8"):
            cfg = nf4_config() if bits == "4" else int8_config()
            base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                        quantization_config=cfg)
            what = "original, " + ("load_in_4bit nf4" if bits == "4" else "load_in_8bit")
        else:
            folder = os.path.join(args.folders, f"{method}-{bits}")
            cfg = int8_config() if bits == "int8" else nf4_config()
            base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                        quantization_config=cfg)
            what = f"{os.path.basename(folder)} backbone, " + (
                "load_in_8bit" if bits == "int8" else "load_in_4bit nf4")
        changed = 0 if args.keep_avx512bf16 else turn_off_avx512bf16(base)
        if method != "float" and not args.keep_avx512bf16:
            left = [n for n, m in base.named_modules()
                    if getattr(m, "support_avx512bf16_for_cpu", False)]
            if left:
                raise Fail(f"support_avx512bf16_for_cpu still set on {left[0]}")
        if method == "loftq":
            model = PeftModel.from_pretrained(base, os.path.join(args.folders, f"loftq-{bits}"),
                                              subfolder="loftq_init", is_trainable=True)
            what += " + its loftq_init adapter"
        else:
            model = get_peft_model(base, fresh)
            what += " + fresh LoRA (B = 0)"
    except Fail:
        raise
    except Exception as e:
        raise Fail(f"load of {method} {bits} failed: {type(e).__name__}: {e}") from e
    return model, what, changed


def held_weight(layer):
    """float32 weight a bitsandbytes / plain linear layer computes with."""
    import bitsandbytes.functional as bnbf
    w = layer.weight
    if w.dtype == torch.int8:
        # Linear8bitLt moves SCB from the parameter to its state on the first forward
        scb = w.SCB if getattr(w, "SCB", None) is not None else layer.state.SCB
        return bnbf.int8_vectorwise_dequant(w.data, scb).float()
    state = getattr(w, "quant_state", None)
    if state is None:
        return w.detach().float()
    return bnbf.dequantize_4bit(w.data, state).float()


def check_gradients(model, batch):
    """Assert the trap workaround works: after an eval-mode no_grad forward (what every eval does),
    each quantized base layer passes g @ W to its input, and lora_A of layer 0 gets a gradient."""
    model.eval()
    with torch.no_grad():
        model(input_ids=batch[:4])
    model.train()
    gen = torch.Generator().manual_seed(0)
    n = 0
    for name, m in model.named_modules():
        if not (hasattr(m, "base_layer") and type(m.base_layer).__module__.startswith("bitsandbytes")):
            continue
        layer = m.base_layer
        x = torch.randn(3, layer.in_features, generator=gen, requires_grad=True)
        g = torch.randn(3, layer.out_features, generator=gen)
        layer(x).backward(g)
        want = g @ held_weight(layer)
        got = x.grad
        # LLM.int8 also quantizes the activations in its forward, but its backward is g @ W (dequantized)
        if got is None or not torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max())):
            err = "none" if got is None else f"{float((got - want).norm() / want.norm()):.3g} relative error"
            raise Fail(f"{name}: gradient to the input of {type(layer).__name__} wrong ({err}) "
                       "after an eval no_grad forward: the bitsandbytes CPU trap is back")
        n += 1
    model.zero_grad(set_to_none=True)
    model(input_ids=batch, labels=batch).loss.backward()
    # end to end: every lora_B gets a gradient, and every lora_A whose B is not zero (a fresh
    # LoRA's B is zero, so its A's first gradient is zero by construction; LoftQ's is not)
    for n_, p in model.named_parameters():
        if "lora_" not in n_:
            continue
        if "lora_A" in n_:
            b = model.get_parameter(n_.replace("lora_A", "lora_B"))
            if float(b.abs().max()) == 0.0:
                continue
        if p.grad is None or float(p.grad.abs().max()) == 0.0:
            raise Fail(f"{n_} got no gradient from a train step after an eval forward")
    model.zero_grad(set_to_none=True)
    return n


@torch.no_grad()
def eval_loss(model, data, chunk=64):
    """Mean token cross-entropy over the held-out set (every sequence has the same length)."""
    model.eval()
    total = 0.0
    for i in range(0, len(data), chunk):
        ids = data[i:i + chunk]
        total += float(model(input_ids=ids, labels=ids).loss) * len(ids)
    model.train()
    return total / len(data)


def finite(x, what):
    if not math.isfinite(x):
        raise Fail(f"{what} is {x}")
    return x


def train_one(method, bits, seed, train, evalset, args, writer):
    wait_quiet()
    t0 = time.time()
    torch.manual_seed(seed)  # LoRA init noise (fresh lora_A); no dropout (lora_dropout 0)
    model, what, changed = load(method, bits, args)
    nq = check_gradients(model, train[:args.batch]) if method != "float" else 0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    tag = f"{method} {bits} seed {seed}"
    print(f"== {tag}: {what}; {sum(p.numel() for p in params)} trainable parameters; "
          f"avx512bf16 turned off on {changed} modules; input gradient checked on {nq} "
          "quantized layers", flush=True)
    model.train()
    run_losses = []
    curve = []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            ev = finite(eval_loss(model, evalset), f"{tag}: eval loss at step {step}")
            tr = sum(run_losses) / len(run_losses) if run_losses else float("nan")
            writer.writerow([method, bits, seed, step, f"{ev:.6f}", "" if not run_losses else f"{tr:.6f}"])
            curve.append(ev)
            print(f"{tag} step {step:4d} eval {ev:.4f}" + (f" train {tr:.4f}" if run_losses else ""),
                  flush=True)
            run_losses = []
        if step == args.steps:
            break
        # one epoch of sequences without repeats while it lasts, then the next pass of the order
        k = (step * args.batch) % len(train)
        ids = train[order[k:k + args.batch]]
        loss = model(input_ids=ids, labels=ids).loss
        run_losses.append(finite(loss.item(), f"{tag}: train loss at step {step + 1}"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f"{tag}: {time.time() - t0:.1f} s, eval {curve[0]:.4f} -> best {min(curve):.4f}, "
          f"final {curve[-1]:.4f}", flush=True)


def main():
    args = parse_args()
    torch.set_num_threads(1)  # reproducible, and the machine's other core is someone else's
    import bitsandbytes
    import peft
    import transformers
    from transformers import AutoModelForCausalLM
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__,
                "python": sys.version.split()[0]}
    print("versions: " + " ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    bits_list = [b for b in args.bits.split(",") if b]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    for b in bits_list:
        if b not in ("2", "2.5", "3", "4", "int8"):
            raise Fail(f"--bits: {b} is not one of 2, 2.5, 3, 4, int8")
    n_train = args.steps * args.batch  # one pass: no sequence is seen twice
    wait_quiet()
    t0 = time.time()
    fmodel = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    train = sample(fmodel, n_train, args.seq_len, args.data_seed)
    evalset = sample(fmodel, args.n_eval, args.seq_len, args.data_seed + 1)
    del fmodel
    data = {"train": [n_train, args.seq_len, digest(train)],
            "eval": [args.n_eval, args.seq_len, digest(evalset)]}
    print(f"data: train {n_train} x {args.seq_len} sha256 {data['train'][2]}, eval {args.n_eval} x "
          f"{args.seq_len} sha256 {data['eval'][2]} (sampled from the float model, seeds "
          f"{args.data_seed} / {args.data_seed + 1}) in {time.time() - t0:.1f} s", flush=True)
    runs = [("float", "-")] + [(m, b) for b in bits_list for m in ("qlora", "loftq")]
    with open(args.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "bits", "seed", "step", "eval_loss", "train_loss"])
        for method, bits in runs:
            for seed in seeds:
                train_one(method, bits, seed, train, evalset, args, w)
                f.flush()
    meta = {"versions": versions, "data": data, "steps": args.steps, "batch": args.batch,
            "lr": args.lr, "eval_every": args.eval_every, "seeds": seeds, "bits": bits_list,
            "train_seconds": round(time.time() - t0, 1)}
    with open(args.meta, "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print(f"finetune: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # anything unforeseen: the traceback, then the one line
        import traceback
        traceback.print_exc()
        print(f"finetune: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
