#!/usr/bin/env bash
# Quantize + dequantize throughput (reference vs fast path, 1 and 2 threads, vs memcpy; CUDA when
# a device is present). Writes bench/results/quant.json (Google Benchmark JSON with the machine
# and commit in its context) and bench/results/quant.log (the raw console output).
# Do not run it in parallel with builds: the machine's cores are shared and timings are noisy.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_BUILD_DIR:-$root/build}
out=$root/bench/results
mkdir -p "$out"
cmake --build "$build" -j2 --target bench_quant >/dev/null
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
commit=$(git -C "$root" rev-parse --short HEAD)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
"$build/bench/bench_quant" \
  --benchmark_out="$out/quant.json.tmp" --benchmark_out_format=json \
  --benchmark_report_aggregates_only=true \
  --benchmark_context=cpu_model="$cpu" --benchmark_context=commit="$commit" \
  --benchmark_context=gpu="${gpu:-none}" \
  --benchmark_context=note="median of 3 repetitions; 2 cores shared with other jobs: noisy" \
  "$@" 2>&1 | tee "$out/quant.log.tmp"
mv "$out/quant.json.tmp" "$out/quant.json"
mv "$out/quant.log.tmp" "$out/quant.log"
echo "quant.sh: wrote $out/quant.json and $out/quant.log"
