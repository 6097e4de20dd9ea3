#!/usr/bin/env bash
# The real client (issue #6): build stories260K outputs with `loftq run` in bf16, bnb4 and
# bnb4 double-quantized form (rank 8, 5 iterations), `loftq verify --json` them, then load each
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
# shellcheck source=tests/support/client_venv.sh
source "$src/tests/support/client_venv.sh" e2e_client
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1); commit: $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for form in bf16 bnb4 bnb4-dq; do
  echo "== $form =="
  extra=(--backbone "${form%-dq}")
  [[ $form == *-dq ]] && extra+=(--double-quant)
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
