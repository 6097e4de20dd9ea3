#!/usr/bin/env bash
# The real client (issue #6): build stories260K outputs with `loftq run` in bf16, bnb4,
# bnb4 double-quantized, LLM.int8 (bf16 and int8 backbones), 2-bit (bf16) and 2.5-bit (bnb4)
# form (rank 8, 5 iterations), `loftq verify --json` them, then load each
# with the pinned PyPI transformers + PEFT + bitsandbytes exactly as a user does
# (tests/client/load_check.py: held base weights reproduce verify's errors, PEFT's scaling and
# adapter tensors, logits closer to the original with the adapter than without). A folder
# built from the spec with the nibbles packed the wrong way round must be rejected (the check
# can fail).
# Needs the client venv (launch/client-venv.sh, ~4 min and 5.7 GB: tests/client/README.md):
# LOFTQ_CLIENT_VENV, else the machine's (~/.cache/loftq/venv-client), else .venv-client in the
# source tree. With none it cannot check anything:
# under CI (CI=true; .ci/run installs the venv first) that is a failure, elsewhere exit 77, which
# ctest reports as Skipped (never Passed).
set -euo pipefail
src=${LOFTQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
bin=${LOFTQ_BINARY:-$src/build/loftq}
model=${LOFTQ_TEST_DATA:-$src/tests/data}/stories260K
test_name=e2e_client  # read by client_venv.sh
# shellcheck source=tests/support/client_venv.sh
source "$src/tests/support/client_venv.sh"
py=$client_py
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1); commit: $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# int8-bf16: LLM.int8 run, bf16 backbone re-quantized by load_in_8bit; int8: the same run's
# pre-quantized int8 backbone (weight + SCB) loaded as is.
# bits2: NF2 in a bf16 backbone, re-quantized by load_in_4bit nf4 (NF2's values are NF4's);
# bits2.5-bnb4: mixed NF4 / NF2 stored as NF4 codes, one quantization_config.
for form in bf16 bnb4 bnb4-dq int8-bf16 int8 bits2 bits2.5-bnb4; do
  echo "== $form =="
  case $form in
    bf16 | bnb4) extra=(--backbone "$form") ;;
    bnb4-dq) extra=(--backbone bnb4 --double-quant) ;;
    int8-bf16) extra=(--quant int8 --backbone bf16) ;;
    int8) extra=(--quant int8 --backbone int8) ;;
    bits2) extra=(--bits 2 --backbone bf16) ;;
    bits2.5-bnb4) extra=(--bits 2.5 --backbone bnb4) ;;
  esac
  "$bin" run --model "$model" --output "$tmp/$form" --rank 8 --iters 5 "${extra[@]}"
  "$bin" verify --model "$model" --output "$tmp/$form" --json "$tmp/$form.verify.json"
  "$py" "$src/tests/client/load_check.py" --model "$model" --output "$tmp/$form" \
    --verify-json "$tmp/$form.verify.json" --json "$tmp/$form.result.json"
done

echo "== spec-built folder, nibbles swapped (must be rejected) =="
"$py" "$src/tests/client/spec_folder.py" --model "$model" --output "$tmp/swapped" --backbone bnb4 --low-nibble-first
rc=0
"$py" "$src/tests/client/load_check.py" --model "$model" --output "$tmp/swapped" >"$tmp/swapped.log" 2>&1 || rc=$?
grep -E '^\[(PASS|FAIL)\]|^load_check' "$tmp/swapped.log" || true
if [[ $rc -ne 1 ]]; then
  echo "e2e_client: load_check accepted (or crashed on, rc=$rc) a folder with swapped nibbles" >&2
  exit 1
fi
echo "e2e_client: passed"
