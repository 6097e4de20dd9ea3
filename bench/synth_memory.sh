#!/usr/bin/env bash
# Peak memory of `loftq synth` on a 70B-shaped layer: the writer streams tensor by tensor, so the
# peak resident set should be near the largest single tensor, not the checkpoint (and far from
# the 80-layer model). Writes bench/results/synth_memory.json and synth_memory.log; deletes the
# ~2.8 GB output afterwards.
#   usage: bench/synth_memory.sh [preset] [layers]     (default llama2-70b 1)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
preset=${1:-llama2-70b}
layers=${2:-1}
bin=${LOFTQ_BINARY:-$root/build/loftq}
results=$root/bench/results
mkdir -p "$results"
out=$(mktemp -d "${TMPDIR:-/tmp}/loftq-synth-bench.XXXXXX")
trap 'rm -rf "$out"' EXIT
log=$results/synth_memory.log

/usr/bin/time -v "$bin" synth --preset "$preset" --layers "$layers" --output "$out/model" >"$log" 2>&1

python3 - "$out/model" "$log" "$results/synth_memory.json" "$preset" "$layers" \
  "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" \
  "$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" "$(nproc)" <<'PY'
import glob, json, os, re, struct, sys
folder, log, dest, preset, layers, cpu, commit, cores = sys.argv[1:9]
sizes = {}
for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        f.seek(0, 2)
        assert f.tell() == 8 + n + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    for k, v in header.items():
        if k != "__metadata__":
            sizes[k] = v["data_offsets"][1] - v["data_offsets"][0]
cfg = json.load(open(os.path.join(folder, "config.json")))
text = open(log).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
parts = [float(p) for p in wall.split(":")]
wall_s = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
# bf16 bytes of the full-depth model of this preset (embeddings, lm_head, norms, decoder layers).
h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
kv = cfg["num_key_value_heads"] * cfg["head_dim"]
q = cfg["num_attention_heads"] * cfg["head_dim"]
e = cfg.get("num_local_experts", 1)  # mixtral: every expert holds gate/up/down, plus the router
per_layer = 2 * h * q + 2 * kv * h + 3 * h * i * e + (h * e if e > 1 else 0) + 2 * h
full_layers = {"llama2-7b": 32, "llama2-13b": 40, "llama2-70b": 80, "codellama-70b": 80, "tiny": 4,
               "llama3-70b": 80, "qwen2.5-72b": 80, "mixtral-8x22b": 56}[preset]
full_bytes = 2 * (2 * v * h + h + full_layers * per_layer)
largest = max(sizes.values())
result = {
    "benchmark": "loftq synth peak memory",
    "command": f"loftq synth --preset {preset} --layers {layers}",
    "machine": cpu, "cores": int(cores), "git_commit": commit,
    "tensors": len(sizes), "files": len(glob.glob(os.path.join(folder, '*.safetensors'))),
    "checkpoint_bytes": sum(sizes.values()),
    "largest_tensor": max(sizes, key=sizes.get), "largest_tensor_bytes": largest,
    "full_model_bytes_bf16": full_bytes,
    "peak_rss_bytes": rss_kb * 1024,
    "peak_rss_over_largest_tensor": round(rss_kb * 1024 / largest, 3),
    "peak_rss_over_checkpoint": round(rss_kb * 1024 / sum(sizes.values()), 3),
    "wall_s": wall_s,
    "note": "one run; wall time is noisy (2 cores shared with other jobs); peak RSS is what this measures. "
            "The writer takes one whole tensor per call, so the floor is one tensor in its output dtype.",
}
json.dump(result, open(dest, "w"), indent=2)
print(json.dumps(result, indent=2))
PY
