#!/usr/bin/env python3
"""GEMM work against accuracy: the study behind the randomized SVD's defaults (issue #15). For each
test matrix and each setting (power scheme, oversampling p, q fresh, q warm) it runs the whole LoftQ
loop (`loftq run`, NF4, T = 5) and compares the as-loaded error with the exact-SVD LoftQ of the
same matrix (`--svd exact`, the same loop with LAPACK's full SVD): ratio = error / exact error.
Work = the columns the GEMM passes over the residual multiply in the 5 iterations (--log-json
`gemm_columns`: k per pass, a Krylov projection (q + 1) k), relative to the old default
(subspace, p 16, q 2, warm q 0); the 5 low-rank products L Rt (r columns each) are not counted.

  bench/passes.py --bin build/loftq --out bench/results/passes [--quick]

Matrices: bench/one_matrix.py's 5504 x 2048 (lowrank: noise + decaying rank-32 part; heavy: the same
with Student-t(3) noise) at r = 64, a 4096 x 4096 heavy one at r = 64, and every one of the 35 real
stories260K matrices at r = 8 (forced --svd randomized: sketch 24 of at most 64 columns).
Writes OUT.json (every run: passes per iteration, errors, svd phase time) and OUT.md (the table).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (power-scheme, oversample, power-iters, warm-power-iters); the first is the old default.
SETTINGS = [("subspace", 16, 2, 0), ("subspace", 16, 2, 1), ("subspace", 16, 1, 0), ("subspace", 0, 2, 0),
            ("krylov", 16, 2, 0), ("krylov", 0, 2, 0), ("krylov", 0, 1, 0), ("krylov", 0, 3, 0),
            ("krylov", 8, 2, 0)]


def run(binary, model, rank, extra, tmp):
    out = os.path.join(tmp, "out")
    log = os.path.join(tmp, "log.jsonl")
    for p in (out, log, out + ".run.h5"):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    cmd = [binary, "run", "--model", model, "--output", out, "--rank", str(rank), "--iters", "5",
           "--log-json", log] + extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in open(log)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "loftq"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "passes"))
    ap.add_argument("--quick", action="store_true", help="only the 5504 x 2048 matrices")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="loftq-passes-")
    cases = []
    for dist in ("lowrank", "heavy"):
        d = os.path.join(tmp, f"m5504-{dist}")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "one_matrix.py"), d, "5504", "2048",
                        "--dist", dist], check=True)
        cases.append((f"5504x2048 {dist}", d, 64, []))
    if not a.quick:
        d = os.path.join(tmp, "m4096-heavy")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "one_matrix.py"), d, "4096", "4096",
                        "--dist", "heavy", "--seed", "1"], check=True)
        cases.append(("4096x4096 heavy", d, 64, []))
        cases.append(("stories260K (35 matrices)", os.path.join(ROOT, "tests", "data", "stories260K"), 8, []))
    results = []
    for label, model, rank, extra in cases:
        exact = {r["matrix"]: r for r in run(a.bin, model, rank, extra + ["--svd", "exact"], tmp)}
        row = {"case": label, "rank": rank, "exact_svd_s": sum(r["times"]["svd"] for r in exact.values()),
               "settings": []}
        base_columns = None
        for scheme, p, q, wq in SETTINGS:
            recs = run(a.bin, model, rank, extra + ["--svd", "randomized", "--power-scheme", scheme,
                                                    "--oversample", str(p), "--power-iters", str(q),
                                                    "--warm-power-iters", str(wq)], tmp)
            ratios = [r["loaded_error"] / exact[r["matrix"]]["loaded_error"] for r in recs]
            columns = sum(sum(r["gemm_columns"]) for r in recs)
            base_columns = base_columns or columns
            row["settings"].append({
                "power_scheme": scheme, "oversample": p,
                "power_iters": q, "warm_power_iters": wq, "gemm_passes": recs[0]["gemm_passes"],
                "gemm_columns": recs[0]["gemm_columns"], "work": columns / base_columns,
                "total_passes": sum(recs[0]["gemm_passes"]), "max_ratio": max(ratios),
                "mean_ratio": sum(ratios) / len(ratios), "matrices": len(recs),
                "svd_s": sum(r["times"]["svd"] for r in recs),
                "errors": {r["matrix"]: r["loaded_error"] for r in recs}})
            print(f"{label:28s} {scheme:8s} p={p:2d} q={q} warm q={wq} passes {sum(recs[0]['gemm_passes']):2d} "
                  f"work {columns / base_columns:.3f} max ratio {max(ratios):.5f} mean {sum(ratios) / len(ratios):.5f}", flush=True)
        row["exact_errors"] = {m: r["loaded_error"] for m, r in exact.items()}
        results.append(row)
    shutil.rmtree(tmp)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if l.startswith("Model name")), platform.processor())
    doc = {"commit": commit, "cpu": cpu, "iters": 5, "results": results}
    with open(a.out + ".json.tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(a.out + ".json.tmp", a.out + ".json")
    lines = [f"# GEMM passes vs accuracy (bench/passes.py, commit {commit}, {cpu})", "",
             "As-loaded error of randomized-SVD LoftQ (NF4, T = 5) over the exact-SVD LoftQ of the same matrix.",
             "passes = GEMM passes over the residual in the 5 iterations (2q + 2 each); work = the columns those",
             "passes multiply (k = r + p per pass, a Krylov projection (q + 1) k), relative to the first row of",
             "the case (the old default: subspace, p 16, q 2, warm q 0).", "",
             "| case | r | scheme | p | q fresh | q warm | passes | work | max ratio | mean ratio |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results:
        for s in row["settings"]:
            lines.append(f"| {row['case']} | {row['rank']} | {s['power_scheme']} | {s['oversample']} | "
                         f"{s['power_iters']} | {s['warm_power_iters']} | {s['total_passes']} | {s['work']:.3f} | "
                         f"{s['max_ratio']:.5f} | {s['mean_ratio']:.5f} |")
    with open(a.out + ".md.tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(a.out + ".md.tmp", a.out + ".md")
    print(f"passes.py: wrote {a.out}.json and {a.out}.md")


if __name__ == "__main__":
    main()
