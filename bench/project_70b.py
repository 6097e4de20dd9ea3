#!/usr/bin/python3
"""Projected wall time of `loftq quantize` on a 70B-class preset for several GPU (rank) counts.

Presets: llama2-70b (default), codellama-70b, llama3-70b, qwen2.5-72b, mixtral-8x22b (`--preset`).
Inputs (all stated in the output):
- the plan: the matrices `loftq quantize` planned for a synthetic 1-layer checkpoint of the preset
  (`loftq synth --preset P --layers 1`; the --log-json log of bench/memory_70b.sh, --plan-log):
  what loftq found as targets there (names, shapes, plan order; e.g. Mixtral's attention only,
  its experts and router stay 16-bit and are not read) is repeated for each of the preset's layers
  (the depth of the preset in src/plan/model_config.cpp, --layers to override), in the C++ plan
  order (layer, then module); every shape is checked against the preset's dims there;
- measured per-shape costs (--costs, from bench/shape_costs.py: seconds per matrix of one rank per
  phase at a LoRA rank r0 and T0 iterations; CPU from bench/memory_70b.sh, or a GPU run's log);
- bandwidths: file-system read / write per node and in aggregate, NVLink all-gather bus bandwidth
  inside a node, InfiniBand per NIC (one NIC per GPU) across nodes;
- the real assignment: `distribute` below re-implements src/plan/distribution.cpp (largest cost
  first onto the least-loaded rank, split matrices over the g least-loaded ranks) with the plan's
  cost model (src/plan/plan.cpp), and `check` compares it with the ranks of a real --log-json run.

Model per rank (one GPU each, gpus_per_node per node; all times in seconds):
  compute  = sum over its items of (quantize + svd + other) * T / T0 * (its rows / rows)
             (svd scaled by (r + oversample) / (r0 + oversample) when r differs from r0);
  read     = bf16 bytes it reads / min(node read bandwidth / ranks on its node, aggregate / N);
  write    = bytes it writes to the run file (packed codes, absmax, A and B) / the same for write;
  comm     = for each split matrix it shares, all-gathers of S slots of k x n floats (Q^T A partials)
             and S k x k (TSQR), k = r + oversample: (warm q + 1) of each per later step; at t = 1 with
             the subspace scheme q + 1 of each, with the Krylov scheme 2q + 1 and q + 1 and one of
             S ((q + 1) k)^2 (the stacked TSQR):
             latency * ceil(log2 g) + bytes * (g - 1) / g / bandwidth (NVLink inside a node, IB
             across); rank-count independent reductions of src/lowrank/distributed_svd.hpp.
  wall     = max over ranks of compute + read + write + comm (reads are synchronous in the driver).
Measured read/write times of the cost file are not used (a page-cached CPU run says nothing about
a cluster file system); they are printed for reference.
  usage: bench/project_70b.py project --costs FILE [--preset P] [options]      (see --help)
         bench/project_70b.py check LOG --ranks N [--lora-rank R] [--split-threshold B]
"""
import argparse
import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISPLAY = {"llama2-70b": "Llama-2-70B", "codellama-70b": "CodeLlama-70B", "llama3-70b": "Llama-3.1-70B",
           "qwen2.5-72b": "Qwen2.5-72B", "mixtral-8x22b": "Mixtral-8x22B"}


def fail(msg):
    print(f"project_70b.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- plan and distribution: the C++ rules, operation for operation (ties must agree) ----------

def estimate_cost(m, n, svd, r, oversample, power_iters, iters, warm_power_iters=0, scheme="krylov"):
    m, n = float(m), float(n)
    k, l = min(m, n), max(m, n)
    if svd == "exact":
        s = 6 * l * k * k + 20 * k * k * k
    else:
        p = min(float(r + oversample), k)
        T = float(iters)  # GEMM passes: 2q + 2 at t = 1 (fresh; Krylov projects on q + 1 blocks: 3q + 2),
        q = float(power_iters)  # 2 warm_q + 2 after (warm start)
        wq = float(warm_power_iters)
        fresh = 2 + 3 * q if scheme == "krylov" else 2 + 2 * q
        passes = fresh + (T - 1) * (2 + 2.0 * wq)
        s = passes / T * 2 * m * n * p + 4 * (m + n) * p * p + 20 * p * p * p
    per_iter = s + 2 * m * n * r + 8 * 16 * m * n
    return iters * per_iter


def row_alignment(cols, blocksize):
    return blocksize // math.gcd(cols, blocksize)


def shard_count(rows, cols, threshold, blocksize, min_rows):
    nbytes = rows * cols * 4
    if threshold == 0 or nbytes <= threshold:
        return 1
    wanted = (nbytes + threshold - 1) // threshold
    align = row_alignment(cols, blocksize)
    units_per_shard = max(1, (max(min_rows, 1) + align - 1) // align)
    return min(wanted, max(1, (rows // align) // units_per_shard))


def shard_bounds(rows, cols, shards, blocksize):
    align = row_alignment(cols, blocksize)
    units = rows // align
    return [align * (units * i // shards) for i in range(shards)] + [rows]


def distribute(mats, ranks, threshold, r, oversample, blocksize=64):
    """mats: list of dicts rows, cols, cost (plan order). Returns per matrix [(rank, row0, row1)]
    and per rank its items [(matrix, row0, row1, shards, group)]."""
    load = [0.0] * ranks
    order = sorted(range(len(mats)), key=lambda i: (-mats[i]["cost"], i))
    assign, work = {}, [[] for _ in range(ranks)]
    for i in order:
        mp = mats[i]
        s = shard_count(mp["rows"], mp["cols"], threshold, blocksize, min(r + oversample, mp["rows"], mp["cols"]))
        b = shard_bounds(mp["rows"], mp["cols"], s, blocksize)
        by_load = sorted(range(ranks), key=lambda x: (load[x], x))
        g = min(s, ranks) if s > 1 else 1
        group = sorted(by_load[:g])
        assign[i] = []
        for j in range(g):
            s0, s1 = j * s // g, (j + 1) * s // g
            assign[i].append((group[j], b[s0], b[s1]))
            work[group[j]].append((i, b[s0], b[s1], s, group))
            load[group[j]] += mp["cost"] * float(b[s1] - b[s0]) / float(mp["rows"])
    return assign, work


def results_suffix(preset):
    return "" if preset == "llama2-70b" else f"_{preset}"


def preset_dims(preset):
    """hidden, intermediate, layers, heads, kv heads of a preset, from src/plan/model_config.cpp
    (the dims(...) call of its branch in preset_model_config)."""
    src = os.path.join(ROOT, "src/plan/model_config.cpp")
    try:
        text = open(src).read()
    except OSError as e:
        fail(f"{src}: {e.strerror}")
    m = re.search(r'name == "%s"\)\s*\{[^{}]*?dims\((\d+),\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)' % re.escape(preset),
                  text)
    if not m:
        fail(f"--preset {preset}: no dims(...) for it in {os.path.relpath(src, ROOT)}")
    return dict(zip(("hidden", "intermediate", "layers", "heads", "kv_heads"), map(int, m.groups())))


LAYER = re.compile(r"\.layers\.(\d+)\.")


def layer_plan(log, dims):
    """The matrices of one layer (plus any outside the layers) as planned by a real run: one record
    per plan index of a --log-json log of a 1-layer checkpoint, in plan order."""
    try:
        recs = [json.loads(l) for l in open(log) if l.strip()]
    except (OSError, ValueError) as e:
        fail(f"--plan-log {log}: {e}")
    first = {}
    for rec in recs:
        first.setdefault(rec["index"], rec)
    if not first or sorted(first) != list(range(len(first))):
        fail(f"--plan-log {log}: plan indices are not 0..N-1")
    h, hd = dims["hidden"], dims["hidden"] // dims["heads"]
    sides = {h, dims["intermediate"], dims["heads"] * hd, dims["kv_heads"] * hd}
    out = []
    for i in range(len(first)):
        rec = first[i]
        m = LAYER.search(rec["matrix"])
        if m and m.group(1) != "0":
            fail(f"--plan-log {log}: {rec['matrix']} is not in layer 0 (give the log of a 1-layer checkpoint)")
        if rec["rows"] not in sides or rec["cols"] not in sides:
            fail(f"--plan-log {log}: {rec['matrix']} is {rec['rows']}x{rec['cols']}, not a shape of the preset "
                 f"(sides {sorted(sides)}): the log is of another model")
        out.append({"name": rec["matrix"], "rows": rec["rows"], "cols": rec["cols"], "in_layer": bool(m)})
    return out


def auto_svd(m, n, r, oversample, power_iters, scheme):
    """--svd auto (src/lowrank/svd_auto.cpp): randomized when min side >= 256 and >= 2 (q + 1) k
    (Krylov) or 4 k (subspace), k = r + oversample."""
    k = r + oversample
    widest = 2 * (power_iters + 1) * k if scheme == "krylov" else 4 * k
    return "randomized" if min(m, n) >= 256 and widest <= min(m, n) else "exact"


def preset_plan(per_layer, layers, r, oversample, power_iters, iters, warm_power_iters, scheme):
    """The full model's plan: layer 0's matrices for each layer (the C++ order: layer, then
    module), then those outside the layers; svd as --svd auto chooses."""
    mats = []
    rows = [(x["name"].replace(".layers.0.", f".layers.{layer}.", 1), x) for layer in range(layers)
            for x in per_layer if x["in_layer"]] + [(x["name"], x) for x in per_layer if not x["in_layer"]]
    for name, x in rows:
        m, n = x["rows"], x["cols"]
        svd = auto_svd(m, n, r, oversample, power_iters, scheme)
        mats.append({"name": name, "rows": m, "cols": n, "svd": svd,
                     "cost": estimate_cost(m, n, svd, r, oversample, power_iters, iters, warm_power_iters, scheme)})
    return mats


# ---- check against a real run ------------------------------------------------------------------

def check(a):
    try:
        recs = [json.loads(l) for l in open(a.log) if l.strip()]
    except (OSError, ValueError) as e:
        fail(f"{a.log}: {e}")
    by_index = {}
    for rec in recs:
        by_index.setdefault(rec["index"], []).append(rec)
    mats = []
    for i in range(max(by_index) + 1):
        if i not in by_index:
            fail(f"{a.log}: no record of plan index {i}")
        rec = by_index[i][0]
        mats.append({"rows": rec["rows"], "cols": rec["cols"],
                     "cost": estimate_cost(rec["rows"], rec["cols"], rec["svd"], a.lora_rank, a.oversample,
                                           a.power_iters, len(rec["errors"]), a.warm_power_iters,
                                           a.power_scheme)})
    assign, _ = distribute(mats, a.ranks, a.split_threshold, a.lora_rank, a.oversample)
    bad = 0
    for i, recs_i in sorted(by_index.items()):
        got = sorted((x["rank"], x["row_begin"], x["row_end"]) for x in recs_i)
        want = sorted(assign[i])
        if got != want:
            bad += 1
            print(f"MISMATCH {recs_i[0]['matrix']}: log {got}, python {want}")
    print(f"check: {len(by_index)} matrices, {a.ranks} ranks: "
          + ("the Python distribution equals the C++ one" if not bad else f"{bad} differ"))
    return 0 if not bad else 1


# ---- projection --------------------------------------------------------------------------------

def project(a):
    try:
        costs = json.load(open(a.costs))
        shapes = costs["shapes"]
        r0, t0 = costs["lora_rank"], costs["iters"]
    except (OSError, ValueError, KeyError) as e:
        fail(f"--costs {a.costs}: not a bench/shape_costs.py file ({e})")
    dims = preset_dims(a.preset)
    layers = a.layers or dims["layers"]
    per_layer = layer_plan(a.plan_log, dims)
    mats = preset_plan(per_layer, layers, a.lora_rank, a.oversample, a.power_iters, a.iters, a.warm_power_iters,
                       a.power_scheme)
    svds = sorted({m["svd"] for m in mats})
    for mp in mats:
        key = f'{mp["rows"]}x{mp["cols"]}'
        if key not in shapes:
            fail(f"--costs {a.costs}: no cost for shape {key} ({mp['name']})")
    p, p0 = a.lora_rank + a.oversample, r0 + a.oversample

    def compute_s(mp):  # one whole matrix, T iterations
        t = shapes[f'{mp["rows"]}x{mp["cols"]}']["times"]
        other = max(0.0, t["total"] - sum(t[k] for k in ("read", "quantize", "svd", "comm", "write")))
        svd = t["svd"] * p / p0  # randomized SVD flops are linear in the sketch width
        return (t["quantize"] + svd + other) * a.iters / t0 * a.compute_scale

    def write_bytes(rows, cols):
        return rows * cols * 4 / 8 + rows * cols / 64 * 4 + 4 * a.lora_rank * (rows + cols)  # codes, absmax, B, A

    gpn = a.gpus_per_node
    out = {"inputs": {
        "costs_file": os.path.relpath(os.path.abspath(a.costs), ROOT), "costs_device": costs.get("device"),
        "costs_measured_at": {"lora_rank": r0, "iters": t0, "svd": costs.get("svd")},
        "projected_for": {"model": f"{DISPLAY.get(a.preset, a.preset)} ({layers} layers, {len(mats)} matrices)",
                          "preset": a.preset, "lora_rank": a.lora_rank,
                          "iters": a.iters, "oversample": a.oversample, "power_iters": a.power_iters,
                          "warm_power_iters": a.warm_power_iters, "power_scheme": a.power_scheme,
                          "bits": 4, "svd": "auto (" + ("randomized for every 70B shape" if svds == ["randomized"]
                                                        else "/".join(svds)) + ")"},
        "plan": {"log": os.path.relpath(os.path.abspath(a.plan_log), ROOT), "preset_dims": dims, "layers": layers,
                 "matrices_per_layer": [f'{x["name"]} {x["rows"]}x{x["cols"]}' for x in per_layer],
                 "matrices": len(mats), "bf16_bytes": sum(2 * m["rows"] * m["cols"] for m in mats)},
        "compute_scale": a.compute_scale, "gpus_per_node": gpn, "fs_read_gbs_per_node": a.fs_read, "fs_write_gbs_per_node": a.fs_write,
        "fs_aggregate_gbs": a.fs_aggregate, "nvlink_allgather_busbw_gbs": a.nvlink,
        "ib_gbs_per_nic": a.ib, "latency_us": a.latency_us,
        "split_threshold_bytes": a.split_threshold,
        "per_shape_seconds_measured": {k: v["times"] for k, v in shapes.items()},
        "per_shape_compute_seconds_projected": {
            f'{m["rows"]}x{m["cols"]}': round(compute_s(m), 3) for m in mats},
    }, "runs": []}

    total_compute = sum(compute_s(m) for m in mats)
    for split in (False, True):
        thr = a.split_threshold if split else 0
        for n in a.gpus:
            assign, work = distribute(mats, n, thr, a.lora_rank, a.oversample)
            nodes = math.ceil(n / gpn)
            per_rank_read = min(a.fs_read / min(n, gpn), a.fs_aggregate / n) * 1e9
            per_rank_write = min(a.fs_write / min(n, gpn), a.fs_aggregate / n) * 1e9
            ranks = []
            largest_item = 0.0
            for rk in range(n):
                comp = rd = wr = cm = 0.0
                for (i, r0w, r1w, s, group) in work[rk]:
                    mp = mats[i]
                    f = (r1w - r0w) / mp["rows"]
                    c = compute_s(mp) * f
                    comp += c
                    largest_item = max(largest_item, c)
                    rd += 2 * (r1w - r0w) * mp["cols"] / per_rank_read
                    wr += write_bytes(r1w - r0w, mp["cols"]) / per_rank_write
                    g = len(group)
                    if g > 1:
                        k = min(p, mp["rows"], mp["cols"])
                        same_node = len({x // gpn for x in group}) == 1
                        bw = (a.nvlink if same_node else a.ib) * 1e9
                        steps = math.ceil(math.log2(g))
                        per_gather = lambda nbytes: a.latency_us * 1e-6 * steps + nbytes * (g - 1) / g / bw
                        q, wq = a.power_iters, a.warm_power_iters
                        warm = (a.iters - 1) * (wq + 1)
                        if a.power_scheme == "krylov":  # t = 1: q projections + q + 1 for the blocks, q + 1 TSQRs + the stacked one
                            kw = k * (q + 1)
                            cm += (2 * q + 1 + warm) * per_gather(s * k * mp["cols"] * 4) \
                                + (q + 1 + warm) * per_gather(s * k * k * 4) + per_gather(s * kw * kw * 4)
                        else:
                            cm += (q + 1 + warm) * (per_gather(s * k * mp["cols"] * 4) + per_gather(s * k * k * 4))
                ranks.append((comp + rd + wr + cm, comp, rd, wr, cm, len(work[rk])))
            busiest = max(ranks)
            wall = busiest[0]
            out["runs"].append({
                "gpus": n, "nodes": nodes, "split": split,
                "wall_s": round(wall, 1),
                "busiest_rank": {"compute_s": round(busiest[1], 1), "read_s": round(busiest[2], 1),
                                 "write_s": round(busiest[3], 1), "comm_s": round(busiest[4], 3),
                                 "items": busiest[5]},
                "ideal_compute_s": round(total_compute / n, 1),
                "load_imbalance_s": round(max(0.0, busiest[1] - total_compute / n), 1),
                "max_items_per_rank": max(x[5] for x in ranks),
                "largest_item_compute_s": round(largest_item, 1),
                "speedup": None, "efficiency": None,
            })
    for split in (False, True):
        runs = [x for x in out["runs"] if x["split"] == split]
        base = total_compute + sum(2 * m["rows"] * m["cols"] for m in mats) / (min(a.fs_read, a.fs_aggregate) * 1e9) \
            + sum(write_bytes(m["rows"], m["cols"]) for m in mats) / (min(a.fs_write, a.fs_aggregate) * 1e9)
        for x in runs:
            x["speedup"] = round(base / x["wall_s"], 2)
            x["efficiency"] = round(base / x["wall_s"] / x["gpus"], 3)
    out["scaling_limits"] = limits(out, mats, compute_s, a, write_bytes)
    return out


def limits(out, mats, compute_s, a, write_bytes):
    big = max(mats, key=compute_s)
    nbig = sum(1 for m in mats if m["rows"] * m["cols"] == big["rows"] * big["cols"])  # e.g. gate, up, down
    model_bytes = sum(2 * m["rows"] * m["cols"] for m in mats)
    below = {}
    for split in (False, True):
        low = [x["gpus"] for x in out["runs"] if x["split"] == split and x["efficiency"] < 0.8]
        below["split" if split else "whole"] = min(low) if low else None
    return {
        "first_listed_gpus_with_efficiency_below_0.8": below,
        "largest_matrix": f'{big["rows"]}x{big["cols"]}',
        "largest_matrix_compute_s": round(compute_s(big), 1),
        "matrices_of_largest_cost": nbig,
        "unsplit_floor": f"with N >= {nbig} GPUs every rank holds at most one of the {nbig} largest "
                         f"matrices: the wall time cannot fall below one of them "
                         f"({compute_s(big):.1f} s compute + its I/O) unless they are split",
        "io_floor_s": round(model_bytes / (a.fs_aggregate * 1e9), 1),
        "io_floor": f"reading the {model_bytes / 1e9:.0f} GB of bf16 matrices at the aggregate file-system "
                    f"bandwidth {a.fs_aggregate} GB/s",
    }


def markdown(out):
    i = out["inputs"]
    pl = i["plan"]
    lines = [
        f"# {i['projected_for']['model'].split(' (')[0]} `loftq quantize`: projected wall time (not measured)",
        "",
        f"Plan: the {len(pl['matrices_per_layer'])} matrices loftq planned for a 1-layer synthetic checkpoint of "
        f"`{i['projected_for']['preset']}` (`{pl['log']}`: "
        + ", ".join(x.split(".")[-2] + " " + x.split(" ")[1] for x in pl["matrices_per_layer"])
        + f") x {pl['layers']} layers = {pl['matrices']} matrices, {pl['bf16_bytes'] / 1e9:.0f} GB in bf16 "
        "(what the clients quantize; anything else, e.g. MoE experts and routers, stays 16-bit and is "
        "neither read nor computed by quantize).",
        "",
        f"Costs: `{i['costs_file']}` ({i['costs_device']}), measured at r={i['costs_measured_at']['lora_rank']}, "
        f"T={i['costs_measured_at']['iters']}; projected for r={i['projected_for']['lora_rank']}, "
        f"T={i['projected_for']['iters']}"
        + (f", compute times x {i['compute_scale']:g} (ASSUMED, a what-if, not measured)" if i["compute_scale"] != 1 else "")
        + f". {i['gpus_per_node']} GPUs per node; file system "
        f"{i['fs_read_gbs_per_node']} GB/s read and {i['fs_write_gbs_per_node']} GB/s write per node, "
        f"{i['fs_aggregate_gbs']} GB/s aggregate; NVLink all-gather {i['nvlink_allgather_busbw_gbs']} GB/s bus "
        f"bandwidth, InfiniBand {i['ib_gbs_per_nic']} GB/s per NIC; split threshold "
        f"{i['split_threshold_bytes'] / 2**20:.0f} MiB (float32) where split.",
        "",
        f"Each GPU is one rank computing at the speed of the costs' device ({i['costs_device']}); "
        "the file system, NVLink and InfiniBand are the given bandwidths. Not modelled: start-up "
        "(MPI, plan, run-file creation), overlap of I/O with compute (the driver reads synchronously).",
        "",
        "Projected compute per matrix (one rank): "
        + ", ".join(f"{k}: {v:.1f} s" for k, v in i["per_shape_compute_seconds_projected"].items()) + ".",
        "",
        "| GPUs | split | wall (s) | busiest: compute | read | write | comm | ideal compute | imbalance | items max | largest item | speedup | efficiency |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in out["runs"]:
        b = x["busiest_rank"]
        lines.append(f"| {x['gpus']} | {'yes' if x['split'] else 'no'} | {x['wall_s']:.1f} | {b['compute_s']:.1f} | "
                     f"{b['read_s']:.1f} | {b['write_s']:.1f} | {b['comm_s']:.3f} | {x['ideal_compute_s']:.1f} | "
                     f"{x['load_imbalance_s']:.1f} | {x['max_items_per_rank']} | {x['largest_item_compute_s']:.1f} | "
                     f"{x['speedup']} | {x['efficiency']} |")
    lim = out["scaling_limits"]
    lines += ["", "Where scaling stops:", "",
              f"- Largest matrix {lim['largest_matrix']}: {lim['largest_matrix_compute_s']} s compute; "
              f"{lim['unsplit_floor']}.",
              "- Efficiency first falls below 80% at "
              + "; ".join(f"{v if v else 'none of the listed'} GPUs ({k} matrices)"
                          for k, v in lim["first_listed_gpus_with_efficiency_below_0.8"].items()) + ".",
              f"- I/O floor {lim['io_floor_s']} s: {lim['io_floor']}.",
              "- Speedup and efficiency are against one GPU's serial time (all compute plus all I/O at one "
              "node's bandwidth).", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare the Python distribution with a --log-json run")
    c.add_argument("log")
    c.add_argument("--ranks", type=int, required=True)
    p = sub.add_parser("project", help="project a 70B-class preset")
    p.add_argument("--costs", required=True, help="bench/shape_costs.py output")
    p.add_argument("--preset", default="llama2-70b", help="llama2-70b, codellama-70b, llama3-70b, qwen2.5-72b, mixtral-8x22b")
    p.add_argument("--plan-log", help="--log-json of quantize on a 1-layer synth of the preset "
                   "(default bench/results/memory_70b[_PRESET].jsonl)")
    p.add_argument("--layers", type=int, default=0, help="layers of the model (default: the preset's)")
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256, 512])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--compute-scale", type=float, default=1.0,
                   help="multiply the measured compute times (a what-if for a faster device; 1 = as measured)")
    p.add_argument("--fs-read", type=float, default=10.0, help="GB/s read per node")
    p.add_argument("--fs-write", type=float, default=5.0, help="GB/s write per node")
    p.add_argument("--fs-aggregate", type=float, default=100.0, help="GB/s of the whole file system")
    p.add_argument("--nvlink", type=float, default=370.0, help="all-gather bus bandwidth in a node, GB/s")
    p.add_argument("--ib", type=float, default=48.0, help="NDR InfiniBand per NIC, GB/s")
    p.add_argument("--latency-us", type=float, default=10.0, help="per collective step")
    p.add_argument("--json", help="default bench/results/projection_70b[_PRESET].json")
    p.add_argument("--md", help="default bench/results/projection_70b[_PRESET].md")
    for q in (c, p):
        q.add_argument("--lora-rank", type=int, default=64)
        q.add_argument("--oversample", type=int, default=0)
        q.add_argument("--power-scheme", choices=["krylov", "subspace"], default="krylov")
        q.add_argument("--power-iters", type=int, default=2)
        q.add_argument("--warm-power-iters", type=int, default=0)
        q.add_argument("--split-threshold", type=int, default=0 if q is c else 256 * 2**20,
                       help="float32 bytes (project: used for the 'split' rows)")
    a = ap.parse_args()
    if a.cmd == "check":
        sys.exit(check(a))
    if any(n < 1 for n in a.gpus):
        fail("--gpus: every count must be >= 1")
    if a.layers < 0:
        fail("--layers: must be >= 1")
    sfx = results_suffix(a.preset)
    a.plan_log = a.plan_log or os.path.join(ROOT, f"bench/results/memory_70b{sfx}.jsonl")
    a.json = a.json or os.path.join(ROOT, f"bench/results/projection_70b{sfx}.json")
    a.md = a.md or os.path.join(ROOT, f"bench/results/projection_70b{sfx}.md")
    out = project(a)
    for path, text in ((a.json, json.dumps(out, indent=1)), (a.md, markdown(out))):
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(path + ".tmp", path)
    print(markdown(out))


if __name__ == "__main__":
    main()
