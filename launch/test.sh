#!/usr/bin/env bash
# Run the whole test suite (ctest: unit tests, MPI tests under mpirun -np 1/2/4, end-to-end
# scripts, the real-client test). Builds first if needed, and makes sure the real-client venv is
# there (launch/client-venv.sh: ~6 s when it is, a 5.7 GB install the first time on a machine;
# LOFTQ_SKIP_CLIENT_VENV=1 skips that step, and e2e_client then reports Skipped without a venv).
# Extra arguments go to ctest (e.g. -R safetensors).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_BUILD_DIR:-$root/build}
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  LOFTQ_SKIP_APT=${LOFTQ_SKIP_APT:-1} bash "$root/launch/setup.sh"
fi
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
if [[ "${LOFTQ_SKIP_CLIENT_VENV:-0}" != 1 ]]; then
  bash "$root/launch/client-venv.sh"
fi
ctest --test-dir "$build" --output-on-failure "$@"
