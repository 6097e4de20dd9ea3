#!/usr/bin/python3
"""Analyse a loftq scaling study: one CSV row per run and PNG plots.

A study folder holds one folder per point, r<R> or r<R>-l<L> (the layout of
slurm/scaling-study.sbatch and bench/scaling.sh), each with point.json (ranks, layers, and from
bench/scaling.sh the measured wall time) and log.jsonl (loftq quantize --log-json: one record per
matrix or shard, with the rank that did it and its times per phase).

Per run the CSV has: the wall time (measured around mpirun by bench/scaling.sh; for a Slurm study
without it, the busiest rank's summed matrix times, a lower bound, marked wall_source=log), the sum
over all records of each phase (read, quantize, svd, comm, write, total: rank-seconds), the busiest
and the mean rank's busy time and their ratio (load imbalance), and the efficiencies:
  strong (same layers, more ranks):   E = (T_ref * R_ref) / (T * R), ref = fewest ranks of the group
  weak (layers / ranks constant):     E = T_ref / T
Plots: time vs ranks, efficiency vs ranks, and per run the phase times per rank (stacked).
  usage: bench/scaling_report.py STUDY [STUDY...] --csv OUT.csv --plots DIR
"""
import argparse
import csv
import glob
import json
import os
import re
import sys
from collections import defaultdict

PHASES = ["read", "quantize", "svd", "comm", "write"]


def fail(msg):
    print(f"scaling_report.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load_point(folder):
    name = os.path.basename(folder.rstrip("/"))
    m = re.fullmatch(r"r(\d+)(?:-l(\d+))?", name)
    pj = os.path.join(folder, "point.json")
    lj = os.path.join(folder, "log.jsonl")
    if not m or not os.path.isfile(pj) or not os.path.isfile(lj):
        return None
    try:
        point = json.load(open(pj))
    except ValueError as e:
        fail(f"{pj}: not JSON ({e})")
    records = []
    for i, line in enumerate(open(lj), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as e:
                fail(f"{lj} line {i}: not JSON ({e})")
    if not records:
        fail(f"{lj}: no records (did the run fail?)")
    ranks = int(point.get("ranks") or m.group(1))
    layers = point.get("layers")
    if layers is None and m.group(2):
        layers = int(m.group(2))
    if layers is None:  # a real model: count the distinct layers of the matrix names
        layers = len({re.search(r"layers\.(\d+)\.", r["matrix"]).group(1) for r in records})
    busy = defaultdict(float)
    sums = defaultdict(float)
    for r in records:
        t = r["times"]
        busy[r["rank"]] += t["total"]
        for p in PHASES + ["total"]:
            sums[p] += t.get(p, 0.0)
    busiest = max(busy.values())
    mean_busy = sum(busy.values()) / ranks  # ranks without work count as idle
    wall = point.get("wall_s")
    row = {
        "study": os.path.basename(os.path.dirname(os.path.abspath(folder))),
        "point": name, "ranks": ranks, "layers": int(layers),
        "matrices": len({r["matrix"] for r in records}), "records": len(records),
        "gbytes_f32": round(sum(r["bytes"] for r in records) / 1e9, 4),
        "wall_s": round(float(wall if wall is not None else busiest), 3),
        "wall_source": "measured" if wall is not None else "log",
    }
    for p in PHASES + ["total"]:
        row[f"sum_{p}_s"] = round(sums[p], 3)
    row.update({
        "busiest_rank_s": round(busiest, 3), "mean_rank_s": round(mean_busy, 3),
        "imbalance": round(busiest / mean_busy, 3) if mean_busy > 0 else "",
        "strong_efficiency": "", "weak_efficiency": "",
        "cores": point.get("cores", ""), "threads_per_rank": point.get("threads_per_rank", ""),
        "oversubscribed": point.get("oversubscribed", ""),
        "machine": point.get("machine", ""), "git_commit": point.get("git_commit", point.get("job", "")),
    })
    return row


def groups(rows):
    """Strong groups (same study and layers) and weak groups (same study and layers/ranks)."""
    strong, weak = defaultdict(list), defaultdict(list)
    for r in rows:
        strong[(r["study"], r["layers"])].append(r)
        weak[(r["study"], r["layers"] / r["ranks"])].append(r)
    keep = lambda g: {k: sorted(v, key=lambda r: r["ranks"]) for k, v in g.items()
                      if len({r["ranks"] for r in v}) >= 2}
    return keep(strong), keep(weak)


def add_efficiencies(strong, weak):
    for g in strong.values():
        ref = g[0]
        for r in g:
            r["strong_efficiency"] = round(ref["wall_s"] * ref["ranks"] / (r["wall_s"] * r["ranks"]), 3)
    for g in weak.values():
        ref = g[0]
        for r in g:
            r["weak_efficiency"] = round(ref["wall_s"] / r["wall_s"], 3)


def plot(rows, strong, weak, folder):
    try:
        import matplotlib
    except ImportError:
        fail("matplotlib missing: apt-get install python3-matplotlib (bench/scaling.sh does it)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(folder, exist_ok=True)
    over = lambda r: r["oversubscribed"] is True or str(r["oversubscribed"]).lower() == "true"
    note = " (hollow: more ranks than cores, oversubscribed)" if any(over(r) for r in rows) else ""

    def series(ax, g, label, key):
        xs = [r["ranks"] for r in g]
        ax.plot(xs, [r[key] for r in g], "-", label=label)
        color = ax.lines[-1].get_color()
        for r in g:
            ax.plot(r["ranks"], r[key], "o", color=color, mfc="none" if over(r) else color)

    def save(fig, ax, ylabel, title, name):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=100)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for (study, layers), g in strong.items():
        series(ax, g, f"strong, {layers} layers", "wall_s")
        ax.plot([r["ranks"] for r in g], [g[0]["wall_s"] * g[0]["ranks"] / r["ranks"] for r in g], ":",
                color=ax.lines[-1].get_color(), label=f"ideal, {layers} layers")
    for (study, ratio), g in weak.items():
        series(ax, g, f"weak, {ratio:g} layers/rank", "wall_s")
    save(fig, ax, "wall time (s)", "loftq quantize: time vs ranks" + note, "time_vs_ranks.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for (study, layers), g in strong.items():
        series(ax, g, f"strong, {layers} layers", "strong_efficiency")
    for (study, ratio), g in weak.items():
        series(ax, g, f"weak, {ratio:g} layers/rank", "weak_efficiency")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_ylim(0, 1.2)
    save(fig, ax, "parallel efficiency", "efficiency" + note, "efficiency.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    ordered = sorted(rows, key=lambda r: (r["layers"], r["ranks"]))
    labels = [f"{r['ranks']}r/{r['layers']}L" + ("*" if over(r) else "") for r in ordered]
    bottom = [0.0] * len(ordered)
    for p in PHASES:
        h = [r[f"sum_{p}_s"] / r["ranks"] for r in ordered]
        ax.bar(labels, h, bottom=bottom, label=p)
        bottom = [b + x for b, x in zip(bottom, h)]
    ax.plot(labels, [r["wall_s"] for r in ordered], "k_", ms=20, label="wall")
    ax.set_ylabel("seconds per rank (phase sums / ranks)")
    ax.set_title("time per phase (*: oversubscribed)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "phases.png"), dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="+", help="study folders (points r<R>[-l<L>] inside)")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--plots", help="folder for the PNG plots (none if omitted)")
    a = ap.parse_args()
    rows = []
    for s in a.studies:
        if not os.path.isdir(s):
            fail(f"{s}: not a folder")
        found = [p for p in (load_point(d) for d in sorted(glob.glob(os.path.join(s, "r*")))) if p]
        if not found:
            fail(f"{s}: no point folders r<R>[-l<L>] with point.json and log.jsonl")
        rows += found
    strong, weak = groups(rows)
    add_efficiencies(strong, weak)
    rows.sort(key=lambda r: (r["study"], r["layers"], r["ranks"]))
    tmp = a.csv + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, a.csv)
    if a.plots:
        plot(rows, strong, weak, a.plots)
    print("ranks layers   wall_s  busiest_s  imbalance  strong_E  weak_E  oversubscribed")
    for r in rows:
        print(f"{r['ranks']:5d} {r['layers']:6d} {r['wall_s']:8.2f} {r['busiest_rank_s']:10.2f} "
              f"{r['imbalance']!s:>10} {r['strong_efficiency']!s:>9} {r['weak_efficiency']!s:>7}  {r['oversubscribed']}")


if __name__ == "__main__":
    main()
