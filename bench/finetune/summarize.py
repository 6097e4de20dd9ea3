#!/usr/bin/env python3
"""Summary table and plots of bench/finetune's CSV (run by run.sh with a python that has matplotlib).

  summarize.py --csv finetune.csv --meta meta.json --out DIR --machine M --commit C --seconds S --command CMD

Writes DIR/summary.md (step-0, best and final eval loss per method and bit width, mean over seeds,
with the seeds' range) and DIR/eval_loss_<bits>.png (mean over seeds, the seeds' range shaded; float
LoRA as a dashed reference line on each).
"""
import argparse
import csv
import json
import os
from collections import defaultdict

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

METHODS = ("float", "qlora", "loftq")
LABEL = {"float": "float LoRA", "qlora": "QLoRA", "loftq": "LoftQ"}
COLOR = {"float": "black", "qlora": "tab:orange", "loftq": "tab:blue"}
BACKBONE = {  # what each row fine-tunes (run.sh builds these)
    ("float", "-"): "original float32 + fresh LoRA",
    ("qlora", "4"): "original, load_in_4bit nf4 + fresh LoRA",
    ("qlora", "int8"): "original, load_in_8bit + fresh LoRA",
    ("loftq", "int8"): "`--quant int8` bf16 backbone, load_in_8bit + loftq_init",
}


def backbone(method, bits):
    if (method, bits) in BACKBONE:
        return BACKBONE[(method, bits)]
    if method == "qlora":
        return f"`--bits {bits} --iters 1` backbone (q(W)), nf4 config + fresh LoRA"
    return f"`--bits {bits}` backbone (5 iters), nf4 config + loftq_init"


def main():
    p = argparse.ArgumentParser()
    for a in ("csv", "meta", "out", "machine", "commit", "seconds", "command"):
        p.add_argument("--" + a, required=True)
    args = p.parse_args()
    meta = json.load(open(args.meta))
    # curves[(method, bits)][seed] = (steps, eval losses)
    curves = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for r in csv.DictReader(open(args.csv)):
        s, e = curves[(r["method"], r["bits"])][int(r["seed"])]
        s.append(int(r["step"]))
        e.append(float(r["eval_loss"]))

    def stats(key):
        runs = curves[key]
        arr = np.array([runs[seed][1] for seed in sorted(runs)])  # seeds x evals
        steps = np.array(runs[sorted(runs)[0]][0])
        return steps, arr

    rows = []
    order = [("float", "-")] + [(m, b) for b in meta["bits"] for m in ("qlora", "loftq")]
    for key in order:
        if key not in curves:
            continue
        steps, arr = stats(key)
        best = arr.min(1)
        best_step = steps[arr.argmin(1)]
        rows.append((key, arr[:, 0], best, best_step, arr[:, -1]))

    def cell(v):
        return f"{v.mean():.4f}" + (f" ({v.min():.4f}-{v.max():.4f})" if len(v) > 1 else "")

    v = meta["versions"]
    d = meta["data"]
    lines = [
        "# CPU fine-tuning benchmark: float LoRA, QLoRA, LoftQ on stories260K",
        "",
        f"Made by `{args.command}` (bench/finetune/). Eval loss: mean token cross-entropy on "
        f"{d['eval'][0]} held-out sequences of {d['eval'][1]} tokens sampled from the float model. "
        f"Mean over seeds {', '.join(map(str, meta['seeds']))} (range in brackets); best = lowest eval "
        f"loss at any evaluated step (every {meta['eval_every']} steps and step 0).",
        "",
        "| method | bits | backbone fine-tuned | step 0 | best | best at step | final (step "
        f"{meta['steps']}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (m, b), s0, best, bstep, fin in rows:
        lines.append(f"| {LABEL[m]} | {b} | {backbone(m, b)} | {cell(s0)} | {cell(best)} | "
                     f"{', '.join(map(str, bstep))} | {cell(fin)} |")
    lines += [
        "",
        f"- training: rank-8 LoRA (alpha 16) on all linear layers, AdamW lr {meta['lr']}, batch "
        f"{meta['batch']}, {meta['steps']} steps, {d['train'][0]} training sequences of {d['train'][1]} "
        "tokens (one pass, order shuffled by the seed), 1 thread, bnb compute dtype float32",
        f"- data: train sha256[:16] {d['train'][2]}, eval {d['eval'][2]} "
        "(torch.multinomial, T = 1, from BOS)",
        f"- machine: {args.machine}; commit: {args.commit}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- total time: {args.seconds} s (build of the folders, data, {len(rows) * len(meta['seeds'])} "
        f"training runs; training and data {meta['train_seconds']} s)",
        "- int8 runs: bitsandbytes' LLM.int8 casts the activations to float16 to quantize them "
        "(its warning, printed on every forward, is filtered out of finetune.log)",
        "- plots: " + ", ".join(f"eval_loss_{b}.png" for b in meta["bits"]),
    ]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    for b in meta["bits"]:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for m in METHODS:
            key = ("float", "-") if m == "float" else (m, b)
            if key not in curves:
                continue
            steps, arr = stats(key)
            ls = "--" if m == "float" else "-"
            ax.plot(steps, arr.mean(0), ls, color=COLOR[m], label=LABEL[m])
            if len(arr) > 1:
                ax.fill_between(steps, arr.min(0), arr.max(0), color=COLOR[m], alpha=0.2, lw=0)
        ax.set_title(f"stories260K, {b if b == 'int8' else b + ' bits'}: eval loss "
                     f"(mean of {len(meta['seeds'])} seeds, range shaded)", fontsize=10)
        ax.set_xlabel("step")
        # 2-bit curves start near 9 and end near 2: a log scale shows both ends; 4-bit and int8
        # curves differ by hundredths, which a linear scale shows better
        lo, hi = ax.get_ylim()
        if hi / lo > 2:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(ScalarFormatter())
            ax.set_ylabel("eval loss (log scale)")
        else:
            ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, f"eval_loss_{b}.png"), dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
