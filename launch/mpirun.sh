#!/usr/bin/env bash
# Run loftq on this machine under mpirun: CPU ranks, or one GPU per rank when GPUs are present.
#   launch/mpirun.sh [-np N] <loftq command> [options...]
# Defaults: N = 2, one OpenMP/OpenBLAS thread per rank (one rank per core, the usual MPI layout)
# unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS are set. OpenBLAS's results depend on its thread
# count, so run files are byte-identical across rank counts at equal threads per rank: keep the
# default, or set the same thread count for every run you compare. As root, Open MPI needs the
# allow-root variables; more ranks than cores need oversubscription: both are set here.
# LOFTQ_RANK_WRAPPER: a command put before the binary on every rank (split on spaces), e.g. the
# per-rank /usr/bin/time of bench/memory_70b.sh; default none.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The binary: LOFTQ_BINARY, else the build tree's, else an installed one (P/share/loftq/launch ->
# P/bin/loftq, see `cmake --install`).
binary=${LOFTQ_BINARY:-$root/build/loftq}
if [[ -z "${LOFTQ_BINARY:-}" && ! -x "$binary" && -x "$root/../../bin/loftq" ]]; then
  binary=$(cd "$root/../../bin" && pwd)/loftq
fi
np=2
if [[ "${1:-}" == "-np" || "${1:-}" == "-n" ]]; then
  np=${2:?launch/mpirun.sh: -np needs a number}
  shift 2
fi
if ! [[ "$np" =~ ^[1-9][0-9]*$ ]]; then
  echo "launch/mpirun.sh: -np must be a positive integer, got '$np'" >&2
  exit 2
fi
if [[ ! -x "$binary" ]]; then
  echo "launch/mpirun.sh: $binary not built; run: bash launch/setup.sh" >&2
  exit 2
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
extra=()
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  extra+=(--oversubscribe --bind-to none -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
  export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
fi
wrapper=()
[[ -n "${LOFTQ_RANK_WRAPPER:-}" ]] && read -r -a wrapper <<<"$LOFTQ_RANK_WRAPPER"
exec mpirun -np "$np" "${extra[@]}" "${wrapper[@]}" "$binary" "$@"
