#!/usr/bin/env bash
# libFuzzer: build the harnesses of fuzz/ with clang (-DLOFTQ_FUZZ=ON, ASan + UBSan, CPU only)
# in their own folder, then run each for SECONDS (default 20) from the committed seed corpus
# fuzz/corpus/<harness>/ (read only; new inputs go to BUILD/corpus/<harness>/, kept between runs).
# CI runs `launch/fuzz.sh 20`; a longer campaign is `launch/fuzz.sh 3600` (or any length, one
# harness: `launch/fuzz.sh 600 fuzz_runfile`). A finding stops the run with libFuzzer's report
# and the input saved as BUILD/artifacts/<harness>-crash-*; fix the bug, then copy the input into
# fuzz/corpus/<harness>/ and add a unit test for it.
#   LOFTQ_FUZZ_BUILD_DIR  build folder (default: build-fuzz)
#   LOFTQ_FUZZ_SEED       libFuzzer's -seed (default 0: a new random seed each run). .ci/run fixes it
#                         so that a red CI run can be replayed; longer campaigns explore at random.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${1:-20}
seed=${LOFTQ_FUZZ_SEED:-0}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(fuzz_safetensors fuzz_model_config fuzz_adapter fuzz_runfile)
jobs=$(nproc 2>/dev/null || echo 2)
clang=$(command -v clang++ || command -v clang++-14 || true)
[[ -n "$clang" ]] || { echo "fuzz: clang++ not found (launch/setup.sh installs clang)" >&2; exit 1; }
CC=${clang%++} CXX=$clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOFTQ_CUDA=OFF \
  -DLOFTQ_FUZZ=ON -DLOFTQ_BENCH=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target "${harnesses[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}  # Open MPI and HDF5 keep allocations until exit
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
mkdir -p "$build/artifacts"
for h in "${harnesses[@]}"; do
  seeds=$root/fuzz/corpus/${h#fuzz_}
  work=$build/corpus/${h#fuzz_}
  mkdir -p "$work"
  echo "=== fuzz: $h for ${seconds} s (seeds: $(find "$seeds" -type f | wc -l), corpus: $(find "$work" -type f | wc -l)) ==="
  "$build/fuzz/$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -seed="$seed" \
    -artifact_prefix="$build/artifacts/$h-" "$work" "$seeds" 2>&1 | grep -v '^#[0-9]' | tail -n 25
  rc=${PIPESTATUS[0]}
  ((rc == 0)) || { echo "fuzz: $h found a failure (exit $rc); input in $build/artifacts/" >&2; exit "$rc"; }
done
echo "fuzz: ${#harnesses[@]} harness(es), ${seconds} s each, no finding"
