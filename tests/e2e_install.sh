#!/usr/bin/env bash
# `cmake --install` gives a working tool: the installed binary runs with a bare environment
# (RUNPATH finds OpenBLAS, HDF5 and MPI where they were built against), and the installed
# launcher (P/share/loftq/launch/mpirun.sh) finds P/bin/loftq and runs a real 2-rank job.
set -euo pipefail
build=$(dirname "${LOFTQ_BINARY:?}")
model=${LOFTQ_TEST_DATA:?}/stories260K
tmp=$(mktemp -d /tmp/loftq-e2e-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e_install: FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install"; }
[[ -x $tmp/prefix/bin/loftq ]] || fail "no bin/loftq under the prefix"
for f in share/loftq/launch/mpirun.sh share/loftq/slurm/loftq.sbatch share/loftq/slurm/llama2-70b.sbatch; do
  [[ -f $tmp/prefix/$f ]] || fail "$f not installed"
done
env -i PATH=/usr/bin:/bin "$tmp/prefix/bin/loftq" --help >"$tmp/help.log" 2>&1 || { cat "$tmp/help.log"; fail "installed binary does not run with a bare environment"; }
grep -q "loftq quantize" "$tmp/help.log" || fail "installed binary: unexpected --help output"
# The launcher from the installed tree, with no LOFTQ_BINARY: it must pick P/bin/loftq.
(cd "$tmp" && env -u LOFTQ_BINARY bash "$tmp/prefix/share/loftq/launch/mpirun.sh" -np 2 run --model "$model" \
   --output "$tmp/out" --rank 4 --iters 1 >"$tmp/run.log" 2>&1) || { cat "$tmp/run.log"; fail "installed launcher run"; }
[[ -f $tmp/out/loftq_init/adapter_model.safetensors ]] || fail "installed run wrote no adapter"
echo "e2e_install: 3 passed, 0 failed"
