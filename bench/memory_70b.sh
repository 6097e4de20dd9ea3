#!/usr/bin/env bash
# Peak memory per rank of `loftq quantize` on one Llama-2-70B-shaped decoder layer over 2 ranks:
# each rank runs under bench/rank_time.sh (launch/mpirun.sh's LOFTQ_RANK_WRAPPER): /usr/bin/time -v
# gives its peak resident set, a 0.2 s /proc sampler splits it into anonymous memory (the
# buffers loftq allocates) and file-backed pages (shared libraries and the touched pages of the
# memory-mapped checkpoint, clean and reclaimable). Both are compared with the float32 bytes of
# the largest matrix that rank held (from --log-json) and with the whole model. Memory does not depend on the iteration count (each
# iteration reuses the same buffers); it runs T = 5, the projection's T, so that the per-shape costs
# are those of the whole loop (fresh sketch at t = 1, warm-started after), not one step scaled.
# The same log gives the per-shape costs of the 70B shapes (bench/shape_costs.py), which
# bench/project_70b.py takes as input.
# Writes bench/results/memory_70b.json, memory_70b.log (stdout of the run + the time reports),
# memory_70b.jsonl (the --log-json log) and shape_costs_cpu.json. The ~2.8 GB synthetic checkpoint
# and the run file live in a temporary folder, deleted at the end.
# With more layers (second argument) the results go to memory_70b_l<layers>.{json,log,jsonl}: the
# peak per rank should not grow with the model, only with the largest matrix a rank holds.
#   usage: bench/memory_70b.sh [ranks] [layers]        (default 2 1)
# LOFTQ_MEMORY_PRESET picks another 70B-class synth preset (llama3-70b, qwen2.5-72b, mixtral-8x22b;
# default llama2-70b); its results go to memory_70b_<preset>[...] and, for one layer, its per-shape
# costs to shape_costs_cpu_<preset>.json. The whole model's bytes are those of the synthetic
# checkpoint's tensors (safetensors headers) with layer 0 counted once per layer of the preset
# (its depth in src/plan/model_config.cpp); the target bytes are those of the matrices planned.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${LOFTQ_BINARY:-$root/build/loftq}
np=${1:-2}
layers=${2:-1}
preset=${LOFTQ_MEMORY_PRESET:-llama2-70b}
suffix=; [[ "$preset" == llama2-70b ]] || suffix=_$preset
[[ "$layers" == 1 ]] || suffix=${suffix}_l$layers
rank=64 iters=5
results=$root/bench/results
[[ -x "$bin" ]] || { echo "memory_70b.sh: $bin not built; run: bash launch/setup.sh" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/loftq-mem70b.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$results" "$tmp/time"
log=$results/memory_70b$suffix.log

"$bin" synth --preset "$preset" --layers "$layers" --output "$tmp/model" >"$log" 2>&1
t0=$(date +%s.%N)
export LOFTQ_MEMORY_PRESET=$preset
LOFTQ_RANK_TIME_DIR=$tmp/time LOFTQ_RANK_WRAPPER=$root/bench/rank_time.sh \
  bash "$root/launch/mpirun.sh" -np "$np" quantize --model "$tmp/model" --work "$tmp/run.h5" \
  --rank $rank --iters $iters --svd randomized --log-json "$tmp/log.jsonl" >>"$log" 2>&1
t1=$(date +%s.%N)
for f in "$tmp"/time/*.rank*; do echo "== $(basename "$f")"; cat "$f"; done >>"$log"
cp "$tmp/log.jsonl" "$results/memory_70b$suffix.jsonl"

/usr/bin/python3 - "$tmp" "$results/memory_70b$suffix.json" "$np" "$rank" "$iters" "$(/usr/bin/python3 -c "print(round($t1 - $t0, 1))")" \
  "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" \
  "$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" "$(nproc)" "$layers" "$root" <<'PY'
import glob, json, os, re, struct, sys
tmp, dest, np_, rank, iters, wall, cpu, commit, cores, layers, root = sys.argv[1:12]
sys.path.insert(0, os.path.join(root, "bench"))
from project_70b import preset_dims
records = [json.loads(l) for l in open(os.path.join(tmp, "log.jsonl")) if l.strip()]
files = glob.glob(os.path.join(tmp, "model", "*.safetensors"))
ckpt = sum(os.path.getsize(p) for p in files)
preset = os.environ.get("LOFTQ_MEMORY_PRESET", "llama2-70b")
full_layers = preset_dims(preset)["layers"]
layer_re = re.compile(r"\.layers\.(\d+)\.")
outside = layer0 = 0  # bytes of the tensors outside the layers, and of layer 0's
for path in files:
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    for name, t in header.items():
        if name == "__metadata__":
            continue
        n = t["data_offsets"][1] - t["data_offsets"][0]
        m = layer_re.search(name)
        if not m:
            outside += n
        elif m.group(1) == "0":
            layer0 += n
full_bf16 = outside + full_layers * layer0
targets = {x["index"]: x for x in records}  # one record per planned matrix (split ones share it)
target_f32 = sum(4 * x["rows"] * x["cols"] for x in targets.values()) * full_layers // int(layers)
ranks = []
for r in range(int(np_)):
    text = open(os.path.join(tmp, "time", f"time.rank{r}")).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) * 1024
    status = dict(l.split() for l in open(os.path.join(tmp, "time", f"status.rank{r}")) if l.strip())
    anon = int(status["max_rss_anon_kb"]) * 1024
    mapped = int(status["max_rss_file_kb"]) * 1024
    held = [x for x in records if x["rank"] == r]
    largest = max((x["bytes"] for x in held), default=0)
    ranks.append({
        "rank": r, "peak_rss_bytes": rss,
        "matrices": [f'{x["matrix"]} [{x["row_begin"]}:{x["row_end"]}, {x["cols"]}]' for x in held],
        "largest_matrix_f32_bytes": largest, "held_f32_bytes": sum(x["bytes"] for x in held),
        "peak_rss_over_largest_matrix": round(rss / largest, 2) if largest else None,
        "peak_anon_bytes_sampled": anon,
        "peak_anon_over_largest_matrix": round(anon / largest, 2) if largest else None,
        "peak_file_backed_bytes_sampled": mapped,
        "held_bf16_bytes": sum(x["bytes"] for x in held) // 2,
        "peak_rss_over_checkpoint": round(rss / ckpt, 3),
        "peak_rss_over_70b_model_bf16": round(rss / full_bf16, 4),
    })
result = {
    "benchmark": f"loftq quantize peak memory per rank, {preset}-shaped layer",
    "command": f"LOFTQ_RANK_WRAPPER=bench/rank_time.sh launch/mpirun.sh -np {np_} quantize --model "
               f"<synth {preset} --layers {layers}> --rank {rank} --iters {iters} --svd randomized --log-json ...",
    "note": "memory does not depend on --iters (the same buffers every iteration); peak_rss is "
            "/usr/bin/time -v's maximum resident set of each rank process; peak_anon and "
            "peak_file_backed are maxima of RssAnon and RssFile sampled every 0.2 s from "
            "/proc/<pid>/status (file-backed: ~0.11 GB of shared libraries plus the touched pages "
            "of the memory-mapped checkpoint, which the reader releases after each matrix is read)",
    "machine": cpu, "cores": int(cores), "git_commit": commit, "wall_s": float(wall),
    "layers": int(layers), "checkpoint_bytes": ckpt,
    "full_model_layers": full_layers,
    "llama2_70b_model_bytes_bf16" if preset == "llama2-70b" else "model_bytes_bf16": full_bf16,
    "llama2_70b_matrices_bytes_f32" if preset == "llama2-70b" else "target_matrices_bytes_f32": target_f32,
    "kept_16bit_bytes_bf16": full_bf16 - target_f32 // 2,
    "ranks": ranks,
}
tmpf = dest + ".tmp"
json.dump(result, open(tmpf, "w"), indent=1)
os.replace(tmpf, dest)
for r in ranks:
    print(f'rank {r["rank"]}: peak RSS {r["peak_rss_bytes"] / 1e9:.2f} GB (anonymous {r["peak_anon_bytes_sampled"] / 1e9:.2f} GB, '
          f'file-backed {r["peak_file_backed_bytes_sampled"] / 1e9:.2f} GB), largest matrix held '
          f'{r["largest_matrix_f32_bytes"] / 1e9:.2f} GB f32 (x{r["peak_rss_over_largest_matrix"]}), '
          f'70B model {full_bf16 / 1e9:.0f} GB bf16')
PY
[[ "$layers" == 1 ]] || exit 0
/usr/bin/python3 "$root/bench/shape_costs.py" "$results/memory_70b$suffix.jsonl" --rank $rank --iters $iters \
  --device "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), 1 thread per rank, $np ranks on $(nproc) shared cores" \
  --output "$results/shape_costs_cpu$suffix.json"
