#!/usr/bin/env bash
# The real client for `loftq merge` (issue #14), on two families:
#   llama   stories260K (tests/data), `loftq run` bf16 backbone (re-quantized nf4 at load) and
#           bnb4 double-quantized backbone
#   mistral a small MistralForCausalLM written by transformers' save_pretrained, `loftq run` bf16
# each: an adapter trained by 3 AdamW steps in PEFT on the 4-bit base as a user loads it
# (tests/client/merge_check.py train), `loftq merge --to bf16` (2 ranks), then
# merge_check.py check: every merged weight within bf16 rounding of PEFT's own merge_and_unload
# on the dequantized base, every other tensor equal, logits of the two merged models matching.
# Then `loftq merge --to bnb4` against PEFT's merge_and_unload on the 4-bit base itself (it
# re-quantizes each Linear4bit): code bytes equal, logits equal (merge_check.py check-bnb4), on
# the bases without double quantization: with it, loftq's double-quant offset (a float32 mean of
# the absmax) can differ from torch's by a float32 ulp, which moves a few absmax codes.
# Needs the client venv (tests/support/client_venv.sh: Skipped without it, Failed under CI=true).
set -euo pipefail
src=${LOFTQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
bin=${LOFTQ_BINARY:-$src/build/loftq}
model=${LOFTQ_TEST_DATA:-$src/tests/data}/stories260K
test_name=e2e_merge_client  # read by client_venv.sh
# shellcheck source=tests/support/client_venv.sh
source "$src/tests/support/client_venv.sh"
py=$client_py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check=$src/tests/client/merge_check.py
quiet() { "$@" > "$tmp/step.log" 2>&1 || { cat "$tmp/step.log"; echo "e2e_merge_client: FAIL: $*" >&2; exit 1; }; }

"$py" "$check" make-mistral --output "$tmp/mistral" > /dev/null 2>&1
for case in llama-bf16 llama-bnb4-dq mistral-bf16; do
  echo "== $case =="
  family=${case%%-*}
  form=${case#*-}
  input=$model
  [[ $family == mistral ]] && input=$tmp/mistral
  extra=(--backbone "${form%-dq}")
  [[ $form == *-dq ]] && extra+=(--double-quant)
  quiet "$bin" run --model "$input" --output "$tmp/$case" --rank 8 --iters 2 "${extra[@]}"
  "$py" "$check" train --base "$tmp/$case" --adapter "$tmp/$case.adapter" 2>/dev/null
  LOFTQ_BINARY=$bin quiet bash "$src/launch/mpirun.sh" -np 2 merge --base "$tmp/$case" \
    --adapter "$tmp/$case.adapter" --output "$tmp/$case.merged" --to bf16
  "$py" "$check" check --base "$tmp/$case" --adapter "$tmp/$case.adapter" --merged "$tmp/$case.merged" \
    2>/dev/null | grep -E '^\[(PASS|FAIL)\]|passed' || { echo "e2e_merge_client: FAIL ($case)" >&2; exit 1; }
  [[ $form == *-dq ]] && continue  # see the header: the double-quant offset
  LOFTQ_BINARY=$bin quiet bash "$src/launch/mpirun.sh" -np 2 merge --base "$tmp/$case" \
    --adapter "$tmp/$case.adapter" --output "$tmp/$case.bnb4" --to bnb4
  "$py" "$check" check-bnb4 --base "$tmp/$case" --adapter "$tmp/$case.adapter" --merged "$tmp/$case.bnb4" \
    2>/dev/null | grep -E '^\[(PASS|FAIL)\]|passed' || { echo "e2e_merge_client: FAIL ($case, --to bnb4)" >&2; exit 1; }
done
echo "e2e_merge_client: passed"
