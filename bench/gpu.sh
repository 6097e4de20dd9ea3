#!/usr/bin/env bash
# Issue #7 benchmark: the LoftQ loop against PEFT's algorithm on the same device, the memory
# floor, TF32, the Llama-2-70B projection and an end-to-end run. On the GPU machine through the
# bundle (bash .bundle/run.sh bench-gpu); here as a CPU dry run:
#   DEVICE=cpu BENCH_SCALE=8 E2E_PRESET=tiny OUTDIR=bench/results/dryrun bash bench/gpu.sh all
#
#   bench/gpu.sh all|bench|e2e
# bench: bench_loftq (float32; on CUDA also LOFTQ_TF32=1), bench/peer_peft.py when torch imports
# e2e:   loftq synth --preset $E2E_PRESET --layers 2, then loftq quantize (one rank) on it
# Writes to $OUTDIR (default: $OUT when set, else bench/results):
#   gpu_<device>.json      summary: per shape and T, ours vs peer, floor, TF32 deltas, 70B
#                          projection, end-to-end, the aims of issue #7 checked
#   gpu_<device>_raw.json  every raw record;  gpu_<device>.log  the whole console log
#   (mode e2e: gpu_<device>_e2e.*)
# Environment: DEVICE (cuda), BENCH_SCALE (1: divides every dimension), REPEATS (5),
# PEER (auto|0), PEER_PYTHON (python3 with torch), PEER_BUDGET_S (starts no new shape after it; default half the time left), SVD (auto: --svd of ours),
# BACKBONE (bf16; fp32 quantizes like PEFT, for a like-for-like error comparison),
# E2E_PRESET (llama2-70b), E2E_ITERS (5), E2E_RANK (64), LIMIT_S (560: the whole script's time),
# E2E_RESERVE_S (seconds the peer leaves for the end-to-end run: 180 in mode all, else 0),
# E2E_MIN_S (150: the end-to-end run of mode all is skipped with less time left).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-all}
device=${DEVICE:-cuda}
scale=${BENCH_SCALE:-1}
repeats=${REPEATS:-5}
bin=${LOFTQ_BUNDLE_BIN:-}
bench_bin=${bin:+$bin/bench_loftq}; bench_bin=${bench_bin:-$root/build/bench/bench_loftq}
loftq_bin=${LOFTQ_BINARY:-$root/build/loftq}
outdir=${OUTDIR:-${OUT:-$root/bench/results}}
mkdir -p "$outdir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ "$device" == cuda ]] && command -v nvidia-smi >/dev/null; then
  machine=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
else
  machine="CPU dry run: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores"
fi
slug=$(echo "${machine%%,*}" | tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9]\+/_/g; s/^_//; s/_$//')
[[ "$device" == cuda ]] || slug=cpu_dryrun
[[ "$mode" == e2e ]] && slug+=_e2e  # a separate e2e call must not overwrite the benchmark's files
log=$outdir/gpu_$slug.log
if [[ -n "${LOFTQ_BUNDLE_COMMIT:-}" ]]; then
  commit="$LOFTQ_BUNDLE_COMMIT (bundle)"
else
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  commit+=$(git -C "$root" diff --quiet HEAD -- src kernels bench 2>/dev/null || echo "-dirty")
fi
# The device tool stops a command after 600 s and then nothing is summarised: every stage below
# gets what is left of LIMIT_S (default 560 s), the summary always runs.
limit=${LIMIT_S:-560}
left() { echo $(( limit - SECONDS )); }
py=python3; [[ -x /usr/bin/python3 && "$device" != cuda ]] && py=/usr/bin/python3
peer_py=${PEER_PYTHON:-$py}
exec > >(tee "$log") 2>&1
echo "gpu.sh $mode: device=$device scale=$scale repeats=$repeats machine='$machine' commit=$commit"
echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [[ "$device" == cuda ]]; then nvidia-smi || true; fi

echo '{}' > "$tmp/ours.json"; echo '{}' > "$tmp/ours_tf32.json"; : > "$tmp/peer.jsonl"
echo '{}' > "$tmp/e2e.json"; : > "$tmp/e2e.jsonl"
if [[ "$mode" == all || "$mode" == bench ]]; then
  echo "== ours: float32"
  "$bench_bin" --device "$device" --scale "$scale" --repeats "$repeats" --svd "${SVD:-auto}" \
    --backbone "${BACKBONE:-bf16}" --out "$tmp/ours.json"
  if [[ "$device" == cuda ]]; then
    echo "== ours: LOFTQ_TF32=1"
    LOFTQ_TF32=1 "$bench_bin" --device "$device" --scale "$scale" --repeats "$repeats" --iters 5 --svd "${SVD:-auto}" --backbone "${BACKBONE:-bf16}" \
      --out "$tmp/ours_tf32.json"
  fi
  if [[ "${PEER:-auto}" != 0 ]] && $peer_py -c "import torch" 2>/dev/null; then
    reserve=0; [[ "$mode" == all ]] && reserve=180
    peer_limit=$(( $(left) - ${E2E_RESERVE_S:-$reserve} - 20 ))
    budget=${PEER_BUDGET_S:-$(( peer_limit / 2 ))}
    echo "== peer: PEFT's algorithm in PyTorch (full SVD, NF4, T = 5), new shapes for ${budget} s, stopped at ${peer_limit} s"
    if (( peer_limit > 30 )); then
      timeout "$peer_limit" "$peer_py" "$root/bench/peer_peft.py" --device "$device" \
        --scale "$scale" --budget-s "$budget" | tee "$tmp/peer.jsonl" || echo "peer: exit $? (shapes not listed above were not measured)"
    else
      echo "peer: no time left (LIMIT_S=$limit)"
    fi
  else
    echo "== peer: skipped (no torch for $peer_py, or PEER=0)"
  fi
fi
if [[ "$mode" == all && $(left) -lt ${E2E_MIN_S:-150} ]]; then
  echo "== end to end: skipped, $(left) s left; run it alone: bash .bundle/run.sh e2e-70b"
elif [[ "$mode" == all || "$mode" == e2e ]]; then
  preset=${E2E_PRESET:-llama2-70b}
  echo "== end to end: loftq synth --preset $preset --layers 2, quantize on $device"
  model=${E2E_DIR:-$tmp}/e2e_model
  rm -rf "$model" "$tmp/e2e.h5"
  t0=$(date +%s%N)
  "$loftq_bin" synth --output "$model" --preset "$preset" --layers 2
  t1=$(date +%s%N)
  "$loftq_bin" quantize --model "$model" --work "$tmp/e2e.h5" --device "$device" \
    --rank "${E2E_RANK:-64}" --iters "${E2E_ITERS:-5}" --log-json "$tmp/e2e.jsonl"
  t2=$(date +%s%N)
  echo "{\"preset\": \"$preset\", \"layers\": 2, \"synth_ms\": $(( (t1 - t0) / 1000000 )), \"quantize_wall_ms\": $(( (t2 - t1) / 1000000 )), \"model_bytes\": $(du -sb "$model" | cut -f1)}" > "$tmp/e2e.json"
  cat "$tmp/e2e.json"
  rm -rf "$model"
fi

$py - "$tmp" "$outdir/gpu_${slug}_raw.json" <<'PY'
import json, os, sys
tmp, raw_out = sys.argv[1:3]
load = lambda f: json.load(open(os.path.join(tmp, f)))
lines = lambda f: [json.loads(l) for l in open(os.path.join(tmp, f)) if l.strip().startswith("{")]
json.dump({"ours": load("ours.json"), "ours_tf32": load("ours_tf32.json"), "peer": lines("peer.jsonl"),
           "e2e": load("e2e.json"), "e2e_log": lines("e2e.jsonl")}, open(raw_out, "w"), indent=1)
PY
$py "$root/bench/gpu_summary.py" "$outdir/gpu_${slug}_raw.json" "$outdir/gpu_$slug.json" \
  --machine "$machine" --commit "$commit" --device "$device" --scale "$scale"
echo "gpu.sh: wrote $outdir/gpu_$slug.json, gpu_${slug}_raw.json, gpu_$slug.log"
