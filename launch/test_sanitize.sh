#!/usr/bin/env bash
# ASan + UBSan: a CPU-only build (-DLOFTQ_CUDA=OFF -DLOFTQ_SANITIZE=ON, top-level CMakeLists.txt)
# in its own folder, then its unit and MPI tests (ctest labels unit, mpi; the e2e scripts are
# left out: they are long and mostly drive the same code through the binary, which the unit
# tests that run `loftq` exercise instrumented too). Any report fails the test it occurs in:
# ASan aborts on the first error, UBSan too (-fno-sanitize-recover=undefined).
#   LOFTQ_SANITIZE_BUILD_DIR  build folder (default: build-asan)
# Extra arguments go to ctest (e.g. -R quant).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_SANITIZE_BUILD_DIR:-$root/build-asan}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOFTQ_CUDA=OFF -DLOFTQ_SANITIZE=ON -DLOFTQ_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs"
# Open MPI (and the HDF5/OpenBLAS it loads) keeps allocations until exit by design: leak checking
# would only report those. Every other ASan check stays on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
ctest --test-dir "$build" --output-on-failure -L 'unit|mpi' -LE gpu "$@"
