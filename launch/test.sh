#!/usr/bin/env bash
# Run the whole test suite (ctest: unit tests, MPI tests under mpirun -np 1/2/4, end-to-end
# scripts). Builds first if needed. Extra arguments go to ctest (e.g. -R safetensors).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_BUILD_DIR:-$root/build}
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  LOFTQ_SKIP_APT=${LOFTQ_SKIP_APT:-1} bash "$root/launch/setup.sh"
fi
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
ctest --test-dir "$build" --output-on-failure "$@"
