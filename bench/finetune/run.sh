#!/usr/bin/env bash
# CPU fine-tuning benchmark (issue #13): eval-loss curves of float LoRA, QLoRA and LoftQ on the real
# stories260K (rank-8 LoRA on all linear layers, AdamW) at 2, 2.5, 3, 4 bits and LLM.int8, fine-tuned
# with the pinned PyPI transformers + PEFT + bitsandbytes of the client venv (launch/client-venv.sh)
# on token ids sampled from the float model itself (bench/finetune/finetune.py says how).
# Builds the folders with `loftq run --rank 8`: LoftQ with 5 iterations (bf16 backbone; int8:
# --quant int8, bf16 backbone, loaded with load_in_8bit), and for QLoRA at 2 / 2.5 / 3 bits the
# backbone of `--iters 1` (kept iterate t = 1: Q = q(W), checked in its report.json), whose adapter
# is discarded; QLoRA at 4 bits and int8 is the original loaded with load_in_4bit nf4 / load_in_8bit.
# Writes bench/results/finetune/: finetune.log (stdout + stderr of the run), finetune.csv (method,
# bits, seed, step, eval_loss, train_loss), meta.json (settings, versions, data digests), summary.md
# (step-0 / best / final eval loss per method and bit width, mean over seeds; machine, commit,
# versions, time), eval_loss_<bits>.png.
# Settings (environment): FT_STEPS (200), FT_SEEDS (0,1), FT_BITS (2,2.5,3,4,int8), FT_LR (1e-3),
# FT_BATCH (16), FT_EVAL_EVERY (10), FT_SEQ_LEN (64), FT_N_EVAL (256); LOFTQ_BIN (build/loftq);
# LOFTQ_CLIENT_VENV as for launch/client-venv.sh; LOFTQ_PLOT_PYTHON: a python with matplotlib
# (default ~/.cache/loftq/venv-bench/bin/python).
# The log drops transformers' "Loading weights" progress bars and bitsandbytes' "MatMul8bitLt: inputs
# will be cast from torch.float32 to float16 during quantization" (printed on every int8 forward:
# LLM.int8 quantizes the activations through float16, as it does on a GPU).
# The machine's cores are shared: everything runs under nice -n 19, one thread, and waits while
# /tmp/quiet.lock exists (before the build and before every training run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${LOFTQ_BIN:-$root/build/loftq}
model=$root/tests/data/stories260K
out=$root/bench/results/finetune
cache=${XDG_CACHE_HOME:-$HOME/.cache}/loftq
plot_py=${LOFTQ_PLOT_PYTHON:-$cache/venv-bench/bin/python}
steps=${FT_STEPS:-200} seeds=${FT_SEEDS:-0,1} bits=${FT_BITS:-2,2.5,3,4,int8}
die() { echo "finetune/run.sh: FAIL: $*" >&2; exit 1; }
wait_quiet() { while [[ -e /tmp/quiet.lock ]]; do sleep 10; done; }

[[ -x $bin ]] || die "$bin not built (bash launch/setup.sh, or set LOFTQ_BIN)"
if ! { [[ -x $plot_py ]] && "$plot_py" -c 'import matplotlib' 2>/dev/null; }; then
  die "$plot_py has no matplotlib (set LOFTQ_PLOT_PYTHON to a python that has it)"
fi
bash "$root/launch/client-venv.sh" >/dev/null
py=${LOFTQ_CLIENT_VENV:-$cache/venv-client}/bin/python
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/loftq-ft.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out" "$tmp/folders"
log=$out/finetune.log
t0=$(date +%s)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "machine: $cpu; commit: $commit; loftq: $bin"
  echo "settings: steps $steps, seeds $seeds, bits $bits, lr ${FT_LR:-1e-3}, batch ${FT_BATCH:-16}," \
    "eval every ${FT_EVAL_EVERY:-10}, seq len ${FT_SEQ_LEN:-64}, eval set ${FT_N_EVAL:-256}"
} | tee "$log.tmp"

wait_quiet
IFS=, read -ra bit_list <<<"$bits"
for b in "${bit_list[@]}"; do
  if [[ $b == int8 ]]; then
    nice -n 19 "$bin" run --model "$model" --output "$tmp/folders/loftq-int8" --rank 8 --iters 5 \
      --quant int8 --backbone bf16 >>"$tmp/loftq.log" 2>&1 || die "loftq run int8 (see $tmp/loftq.log)"
    continue
  fi
  nice -n 19 "$bin" run --model "$model" --output "$tmp/folders/loftq-$b" --rank 8 --iters 5 \
    --bits "$b" --backbone bf16 >>"$tmp/loftq.log" 2>&1 || die "loftq run --bits $b failed"
  if [[ $b != 4 ]]; then
    nice -n 19 "$bin" run --model "$model" --output "$tmp/folders/qlora-$b" --rank 8 --iters 1 \
      --bits "$b" --backbone bf16 >>"$tmp/loftq.log" 2>&1 || die "loftq run --bits $b --iters 1 failed"
    # the QLoRA backbone must be the plain quantization q(W): every matrix kept iterate 1
    "$py" - "$tmp/folders/qlora-$b/report.json" <<'PY' || die "qlora-$b: a matrix did not keep iteration 1"
import json, sys
m = json.load(open(sys.argv[1]))["matrices"]
bad = [x["name"] for x in m if x["chosen_iteration"] != 1]
sys.exit(1 if bad or not m else 0)
PY
  fi
done
for d in "$tmp"/folders/*/; do
  name=$(basename "$d")
  nice -n 19 "$bin" verify --model "$model" --output "${d%/}" --json "$tmp/verify-$name.json" \
    >"$tmp/verify-$name.log" 2>&1 || die "loftq verify $name failed: $(tail -1 "$tmp/verify-$name.log")"
  echo "verify $name: $(grep -o 'worse than QLoRA on .*' "$tmp/verify-$name.log")" | tee -a "$log.tmp"
done
built=$(cd "$tmp/folders" && printf '%s ' */ | tr -d /)
echo "built ${built}with $bin run --rank 8 (and verified)" | tee -a "$log.tmp"

rc=0
nice -n 19 "$py" -W ignore::UserWarning "$root/bench/finetune/finetune.py" --model "$model" \
  --folders "$tmp/folders" --csv "$out/finetune.csv.tmp" --meta "$out/meta.json" \
  --steps "$steps" --seeds "$seeds" --bits "$bits" --lr "${FT_LR:-1e-3}" --batch "${FT_BATCH:-16}" \
  --eval-every "${FT_EVAL_EVERY:-10}" --seq-len "${FT_SEQ_LEN:-64}" --n-eval "${FT_N_EVAL:-256}" \
  2>&1 | grep --line-buffered -v -e '^Loading weights' -e '^MatMul8bitLt: inputs will be cast' |
  tee -a "$log.tmp" || rc=$?
# pipefail passes the python's status through grep and tee; its one-line reason is in the log
[[ $rc -eq 0 ]] || die "finetune.py failed: $(grep -m1 '^finetune: FAIL' "$log.tmp" || tail -1 "$log.tmp")"
t1=$(date +%s)
echo "total time: $((t1 - t0)) s" | tee -a "$log.tmp"
mv "$out/finetune.csv.tmp" "$out/finetune.csv"
mv "$log.tmp" "$log"
"$plot_py" "$root/bench/finetune/summarize.py" --csv "$out/finetune.csv" --meta "$out/meta.json" \
  --out "$out" --machine "$cpu" --commit "$commit" --seconds "$((t1 - t0))" \
  --command "bash bench/finetune/run.sh${FT_STEPS:+ (FT_STEPS=$FT_STEPS)}"
echo "finetune/run.sh: wrote $out/{finetune.log,finetune.csv,summary.md,eval_loss_*.png}"
