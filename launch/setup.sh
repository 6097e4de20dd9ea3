#!/usr/bin/env bash
# Install the build dependencies (Debian 12, as root or with sudo) and build loftq into build/.
# Idempotent: re-running only rebuilds what changed.
#   LOFTQ_SKIP_APT=1   skip the apt step (dependencies already there)
#   LOFTQ_BUILD_DIR    build folder (default: build)
#   LOFTQ_CMAKE_ARGS   extra cmake arguments (e.g. -DLOFTQ_CUDA=OFF)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_BUILD_DIR:-$root/build}

packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-openmpi-dev
          libboost-program-options-dev libopenblas-dev libopenblas0-openmp liblapacke-dev nlohmann-json3-dev
          libgtest-dev libbenchmark-dev python3 python3-numpy python3-h5py
          slurmctld slurmd slurm-client munge libpmix-dev shellcheck
          clang libclang-rt-14-dev libomp-dev)  # launch/fuzz.sh: libFuzzer is in clang's runtime
if [[ "${LOFTQ_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${LOFTQ_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$jobs"
echo "setup: built $build/loftq"
