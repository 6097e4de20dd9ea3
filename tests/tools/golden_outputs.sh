#!/usr/bin/env bash
# Digests of everything a set of representative runs writes (run-file datasets but timings and
# owners; every output file, report.json without its timings and paths), so that two builds can be
# compared byte for byte: a refactoring must change no number.
#   tests/tools/golden_outputs.sh BINARY OUT_DIR     -> OUT_DIR/digests.txt
#   diff A/digests.txt B/digests.txt                 (empty = identical)
# Cases: the real stories260K at 1 and 2 ranks (bf16, bnb4 + double quant, fp16, 2 bits, mixed
# 2.5 bits, PEFT semantics with exact SVD, rslora, scatter I/O) and split matrices over 2 ranks.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
bin=$(readlink -f "${1:?binary}")
out=$(mkdir -p "${2:?out dir}" && cd "$2" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
model=$root/tests/data/stories260K
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
rm -rf "$out/cases"; mkdir -p "$out/cases"
: >"$out/digests.txt"

digest_case() {  # name folder runfile
  local name=$1 dir=$2 run=$3
  /usr/bin/python3 "$root/tests/runfile_digest.py" "$run" | sed "s|^|$name runfile |" >>"$out/digests.txt"
  (cd "$dir" && find . -type f ! -name report.json | LC_ALL=C sort | xargs sha256sum) \
    | sed "s|^|$name file |" >>"$out/digests.txt"
  /usr/bin/python3 - "$dir/report.json" <<'PY' | sed "s|^|$name report |" >>"$out/digests.txt"
import json, sys
VOLATILE = {"seconds", "time", "times", "timings", "elapsed", "wall_seconds", "path", "model", "work",
            "output", "run_file", "started", "finished", "host", "phase_seconds"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if k not in VOLATILE and not k.endswith("_seconds") and not k.endswith("_s")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(open(sys.argv[1]))), sort_keys=True))
PY
}

run_case() {  # name np args...
  local name=$1 np=$2; shift 2
  local dir=$out/cases/$name
  mpirun -np "$np" --oversubscribe --bind-to none -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
    "$bin" run --model "$model" --output "$dir" --work "$dir.run.h5" --rank 8 --iters 3 "$@" \
    >"$dir.log" 2>&1 || { echo "case $name failed:"; tail -5 "$dir.log"; exit 1; }
  digest_case "$name" "$dir" "$dir.run.h5"
}

run_case bf16_np1 1
run_case bf16_np2 2
run_case bnb4_dq 2 --backbone bnb4 --double-quant
run_case fp16 1 --backbone fp16
run_case nf2 2 --bits 2
run_case mixed 2 --bits 2.5 --rslora --lora-alpha 8
run_case peft 1 --svd exact --no-keep-best --no-scale-compensation --backbone bnb4
run_case scatter 2 --io scatter --svd randomized
run_case split 2 --split-threshold 20000 --svd randomized
run_case fp4_fp32 2 --quant fp4 --backbone fp32
echo "golden_outputs: $(wc -l <"$out/digests.txt") digests in $out/digests.txt"
