#!/usr/bin/env bash
# The README's first command: install the dependencies (apt, Debian 12), build, and run the main
# job on the built-in default: the real stories260K Llama (tests/data/stories260K), 2 MPI ranks
# on the CPU, LoftQ NF4 with r = 8, T = 5. Writes under out/quickstart/ (replaced on each run).
#   LOFTQ_QUICKSTART_RANKS   MPI ranks (default 2)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"

out=$root/out/quickstart
rm -rf "$out"
mkdir -p "$out"
ranks=${LOFTQ_QUICKSTART_RANKS:-2}
echo "quickstart: loftq quantize on stories260K, $ranks ranks, CPU -> $out"
bash "$root/launch/mpirun.sh" -np "$ranks" quantize \
  --model "$root/tests/data/stories260K" --work "$out/stories260K.h5" \
  --rank 8 --iters 5 --log-json "$out/stories260K.jsonl"
