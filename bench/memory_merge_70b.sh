#!/usr/bin/env bash
# Peak memory per rank of `loftq merge` on one Llama-2-70B-shaped decoder layer over 2 ranks
# (issue #14: <= 4 GB per rank). The base is `loftq synth --preset llama2-70b --layers 1` (bf16),
# held as a `loftq run` bf16 backbone is (--base-load nf4: every linear weight re-quantized at
# load, the heavier path), the adapter a rank-64 LoRA on all 7 linear modules
# (tests/tools/make_adapter.py). Each rank runs under bench/rank_time.sh (/usr/bin/time -v peak
# RSS, and sampled anonymous / file-backed peaks); --log-json says which tensors each rank held.
# Writes bench/results/memory_merge_70b.{json,log,jsonl}; exits 1 if a rank passes 4 GB.
# The ~2.8 GB checkpoint, the adapter and the merged output live in a temporary folder.
#   usage: bench/memory_merge_70b.sh [ranks]        (default 2)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${LOFTQ_BINARY:-$root/build/loftq}
np=${1:-2}
results=$root/bench/results
[[ -x "$bin" ]] || { echo "memory_merge_70b.sh: $bin not built; run: bash launch/setup.sh" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/loftq-merge70b.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$results" "$tmp/time"
log=$results/memory_merge_70b.log

"$bin" synth --preset llama2-70b --layers 1 --output "$tmp/model" >"$log" 2>&1
/usr/bin/python3 "$root/tests/tools/make_adapter.py" --base "$tmp/model" --r 64 \
  --modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --output "$tmp/adapter" >>"$log" 2>&1
t0=$(date +%s.%N)
LOFTQ_RANK_TIME_DIR=$tmp/time LOFTQ_RANK_WRAPPER=$root/bench/rank_time.sh \
  bash "$root/launch/mpirun.sh" -np "$np" merge --base "$tmp/model" --adapter "$tmp/adapter" \
  --output "$tmp/merged" --base-load nf4 --log-json "$tmp/log.jsonl" >>"$log" 2>&1
t1=$(date +%s.%N)
for f in "$tmp"/time/*.rank*; do echo "== $(basename "$f")"; cat "$f"; done >>"$log"
cp "$tmp/log.jsonl" "$results/memory_merge_70b.jsonl"

/usr/bin/python3 - "$tmp" "$results/memory_merge_70b.json" "$np" "$(/usr/bin/python3 -c "print(round($t1 - $t0, 1))")" \
  "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" \
  "$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" "$(nproc)" <<'PY'
import glob, json, os, re, sys
tmp, dest, np_, wall, cpu, commit, cores = sys.argv[1:8]
records = [json.loads(l) for l in open(os.path.join(tmp, "log.jsonl")) if l.strip()]
ckpt = sum(os.path.getsize(p) for p in glob.glob(os.path.join(tmp, "model", "*.safetensors")))
limit = 4e9
ranks = []
for r in range(int(np_)):
    text = open(os.path.join(tmp, "time", f"time.rank{r}")).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) * 1024
    status = dict(l.split() for l in open(os.path.join(tmp, "time", f"status.rank{r}")) if l.strip())
    held = [x for x in records if x["rank"] == r]
    largest = max((x["f32_bytes"] for x in held if x["kind"] != "copy"), default=0)
    ranks.append({
        "rank": r, "peak_rss_bytes": rss,
        "tensors": [f'{x["tensor"]} {x["kind"]} {x["shape"]}' for x in held],
        "largest_matrix_f32_bytes": largest,
        "peak_rss_over_largest_matrix": round(rss / largest, 2) if largest else None,
        "peak_anon_bytes_sampled": int(status["max_rss_anon_kb"]) * 1024,
        "peak_file_backed_bytes_sampled": int(status["max_rss_file_kb"]) * 1024,
        "within_4GB": rss <= limit,
    })
result = {
    "benchmark": "loftq merge peak memory per rank, Llama-2-70B-shaped layer, rank-64 adapter on all 7 linears",
    "command": f"LOFTQ_RANK_WRAPPER=bench/rank_time.sh launch/mpirun.sh -np {np_} merge --base <synth llama2-70b "
               f"--layers 1> --adapter <r=64, 7 modules> --base-load nf4 --to bf16 --log-json ...",
    "machine": cpu, "cores": int(cores), "git_commit": commit, "wall_s": float(wall), "checkpoint_bytes": ckpt,
    "ranks": ranks,
}
json.dump(result, open(dest + ".tmp", "w"), indent=1)
os.replace(dest + ".tmp", dest)
for r in ranks:
    print(f'rank {r["rank"]}: peak RSS {r["peak_rss_bytes"] / 1e9:.2f} GB (anonymous {r["peak_anon_bytes_sampled"] / 1e9:.2f} GB, '
          f'file-backed {r["peak_file_backed_bytes_sampled"] / 1e9:.2f} GB), largest matrix held '
          f'{r["largest_matrix_f32_bytes"] / 1e9:.2f} GB f32 (x{r["peak_rss_over_largest_matrix"]}), wall {wall} s')
sys.exit(0 if all(r["within_4GB"] for r in ranks) else 1)
PY
