#!/usr/bin/python3
"""Per-shape costs from a loftq quantize --log-json log, the input of bench/project_70b.py.

For every matrix shape (rows x cols) of whole (not split) matrices, the median over its records of
each phase time (read, quantize, svd, comm, write, total: seconds of one rank on one matrix),
with the LoRA rank and iteration count of the run (not in the records: give them) and a free-text
device line. Any log works: the CPU one of bench/memory_70b.sh, or a GPU run's (issue #7's bench).
  usage: bench/shape_costs.py LOG.jsonl --rank R --iters T --device TEXT --output costs.json
"""
import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

PHASES = ["read", "quantize", "svd", "comm", "write", "total"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--rank", type=int, required=True, help="LoRA rank r of the run")
    ap.add_argument("--iters", type=int, required=True, help="LoftQ iterations T of the run")
    ap.add_argument("--device", required=True, help="what ran it (device, threads, ranks)")
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    shapes = defaultdict(list)
    svd = set()
    try:
        lines = open(a.log).read().splitlines()
    except OSError as e:
        sys.exit(f"shape_costs.py: {a.log}: {e.strerror}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            whole = r["row_begin"] == 0 and r["row_end"] == r["rows"]
            key = f'{r["rows"]}x{r["cols"]}'
            times = r["times"]
        except (ValueError, KeyError) as e:
            sys.exit(f"shape_costs.py: {a.log} line {n}: not a loftq --log-json record ({e})")
        if whole:
            shapes[key].append(times)
            svd.add(r["svd"])
    if not shapes:
        sys.exit(f"shape_costs.py: {a.log}: no whole-matrix records")
    out = {
        "source": os.path.basename(a.log), "device": a.device, "lora_rank": a.rank, "iters": a.iters,
        "svd": sorted(svd), "unit": "seconds per matrix on one rank (median over records)",
        "shapes": {k: {"rows": int(k.split("x")[0]), "cols": int(k.split("x")[1]), "records": len(v),
                       "times": {p: round(statistics.median(t.get(p, 0.0) for t in v), 4) for p in PHASES}}
                   for k, v in sorted(shapes.items())},
    }
    tmp = a.output + ".tmp"
    json.dump(out, open(tmp, "w"), indent=1)
    os.replace(tmp, a.output)
    for k, v in out["shapes"].items():
        print(f"{k:>12}: " + ", ".join(f"{p} {v['times'][p]:.2f}" for p in PHASES) + f"  ({v['records']} records)")


if __name__ == "__main__":
    main()
