#!/usr/bin/env bash
# The README's first command: install the dependencies (apt, Debian 12), build, and run the main
# job on the built-in default: the real stories260K Llama (tests/data/stories260K), 2 MPI ranks
# on the CPU, LoftQ NF4 with r = 8, T = 5, exported for transformers + PEFT (bf16 backbone +
# loftq_init adapter), then verified as it will be loaded. Writes under out/quickstart/
# (replaced on each run).
#   LOFTQ_QUICKSTART_RANKS   MPI ranks (default 2)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"

out=$root/out/quickstart
rm -rf "$out"
mkdir -p "$out"
ranks=${LOFTQ_QUICKSTART_RANKS:-2}
model=$root/tests/data/stories260K
echo "quickstart: loftq run on stories260K, $ranks ranks, CPU -> $out/stories260K-loftq"
bash "$root/launch/mpirun.sh" -np "$ranks" run --model "$model" --output "$out/stories260K-loftq" \
  --rank 8 --iters 5 --log-json "$out/stories260K.jsonl"
echo "quickstart: loftq verify (the output as transformers + bitsandbytes + PEFT load it)"
"$root/build/loftq" verify --model "$model" --output "$out/stories260K-loftq"
"$root/build/loftq" inspect "$out/stories260K-loftq" | tail -n 12
