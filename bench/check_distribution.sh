#!/usr/bin/env bash
# Checks that bench/project_70b.py's Python distribution (largest first, least loaded, split
# groups) assigns every matrix and row range to the same rank as the C++ one did in real runs:
# the committed --log-json logs of the CPU scaling study and two split runs of stories260K
# (made with: launch/mpirun.sh -np N quantize --model tests/data/stories260K --work W --rank 8
#  --iters 2 --split-threshold 20KB --log-json LOG). Writes bench/results/distribution_check.txt.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
res=$root/bench/results
check() { /usr/bin/python3 "$root/bench/project_70b.py" check "$@"; }
{
  echo "# git commit $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  for d in "$res"/scaling_cpu*/r*-l*; do
    r=$(basename "$d"); r=${r#r}; r=${r%%-*}
    rank=$(sed -n 's/.*--rank \([0-9]*\).*/\1/p' "$d/point.json")
    echo "== ${d#"$root"/} (ranks $r, --rank $rank)"
    check "$d/log.jsonl" --ranks "$r" --lora-rank "$rank"
  done
  for n in 3 4; do
    f=$res/distribution_check/stories260K-split20KB-np$n.jsonl
    echo "== ${f#"$root"/} (ranks $n, --rank 8, --split-threshold 20KB)"
    check "$f" --ranks "$n" --lora-rank 8 --split-threshold 20480
  done
  for f in "$res"/memory_70b*.jsonl; do
    echo "== ${f#"$root"/} (ranks 2, --rank 64)"
    check "$f" --ranks 2 --lora-rank 64
  done
} | tee "$res/distribution_check.txt"
! grep -q MISMATCH "$res/distribution_check.txt"
