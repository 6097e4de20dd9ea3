#!/usr/bin/env bash
# Safetensors read/write throughput: read_f32 (BF16 and F32 -> float32, finite check on) against
# memcpy of the same bytes in the same process, and streaming write with fsync.
# Writes bench/results/safetensors.json (Google Benchmark JSON: medians of 5 repeats) and
# bench/results/safetensors.log (raw output, machine, commit). Run from the repository root
# after building: cmake --build build --target bench_safetensors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bench/bench_safetensors"
out="$root/bench/results"
mkdir -p "$out"
[ -x "$bin" ] || { echo "bench/safetensors.sh: build bench_safetensors first" >&2; exit 1; }
log="$out/safetensors.log"
{
  echo "machine: $(lscpu | grep -m1 'Model name' | sed 's/Model name: *//') ($(nproc) cores visible)"
  echo "commit: $(git -C "$root" rev-parse HEAD)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "tensor: ${LOFTQ_BENCH_MB:-128} MB; OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
  echo "note: the build machine's 2 cores are shared with other jobs: timings are noisy."
} > "$log"
"$bin" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
       --benchmark_out="$out/safetensors.json" --benchmark_out_format=json \
       --benchmark_context=commit="$(git -C "$root" rev-parse HEAD)" \
       --benchmark_context=note="2 shared cores: noisy" 2>&1 | tee -a "$log"
echo "bench/safetensors.sh: wrote $out/safetensors.json and $log"
