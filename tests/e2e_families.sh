#!/usr/bin/env bash
# Every model users bring (issue #12): tiny random checkpoints of 16 families written by
# transformers' own from_config + save_pretrained (bf16, sharded with an index;
# tests/client/make_family.py), each through `loftq run` with a bf16 (1 rank) and a bnb4 backbone (2 MPI
# ranks), `loftq verify --json`, then loaded with transformers + bitsandbytes + PEFT as
# README says (tests/client/load_check.py via families_check.py): every Linear4bit module carries
# a LoRA whose tensors equal the file's; held weights + adapter reproduce verify's error (float32
# dequant, 1e-5 relative); logits closer to the original with the adapter than without. Also: a
# model_type nobody knows, with a regular layout, is accepted; MoE outputs state what stays 16-bit.
# Needs the client venv (tests/support/client_venv.sh: under CI a missing venv fails).
set -euo pipefail
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
test_name=e2e_families  # read by client_venv.sh
# shellcheck source=tests/support/client_venv.sh
source "$src/tests/support/client_venv.sh"
t0=$SECONDS
"$client_py" "$src/tests/client/make_family.py" all "$tmp/models" >"$tmp/make.log" 2>&1 ||
  { cat "$tmp/make.log"; fail "make_family.py could not write the checkpoints"; }
ok "16 checkpoints written by transformers in $((SECONDS - t0)) s"
families=$("$client_py" "$src/tests/client/make_family.py" --list)

mkdir -p "$tmp/out"
: >"$tmp/cases"
for f in $families; do
  m=$tmp/models/$f
  [[ -f $m/model.safetensors.index.json ]] || fail "$f: transformers wrote no sharded index"
  for bb in bf16 bnb4; do
    np=1
    if [[ $bb == bnb4 ]]; then np=2; fi  # every family at 1 and at 2 ranks
    out=$tmp/out/$f-$bb
    mpi "$np" run --model "$m" --output "$out" --rank 8 --iters 2 --backbone "$bb" >"$tmp/$f-$bb.log" 2>&1 ||
      { cat "$tmp/$f-$bb.log"; fail "$f: loftq run --backbone $bb on $np rank(s) failed"; }
    "$bin" verify --model "$m" --output "$out" --json "$out.verify.json" >"$tmp/$f-$bb.verify.log" 2>&1 ||
      { cat "$tmp/$f-$bb.verify.log"; fail "$f: loftq verify ($bb) failed"; }
    echo "$m $out $out.verify.json" >>"$tmp/cases"
  done
done
ok "32 outputs made and verified in $((SECONDS - t0)) s"

# MoE: what stays 16-bit is stated in the summary, report.json and inspect.
for f in mixtral qwen2_moe qwen3_moe; do
  grep -q "MoE expert" "$tmp/$f-bf16.log" || fail "$f: the run's summary does not say the experts stay 16-bit"
  "$py" - "$tmp/out/$f-bnb4/report.json" <<'PY' || fail "$f: report.json does not state the 16-bit tensors"
import json, sys
k = json.load(open(sys.argv[1]))["kept_16bit"]
kinds = {g["kind"]: g for g in k["groups"]}
assert "MoE expert" in kinds and "MoE router" in kinds, kinds
assert 0 < kinds["MoE expert"]["share"] < 1, kinds
PY
  "$bin" inspect "$tmp/models/$f" | grep -q "MoE expert" || fail "$f: inspect does not say the experts stay 16-bit"
done
ok "MoE outputs state the 16-bit experts and routers (summary, report.json, inspect)"

# A model_type nobody knows, with a regular layout: planned from the checkpoint.
cp -r "$tmp/models/llama3" "$tmp/acme"
sed -i 's/"model_type": "llama"/"model_type": "acme_decoder"/' "$tmp/acme/config.json"
"$bin" run --model "$tmp/acme" --output "$tmp/acme-out" --rank 8 --iters 1 >"$tmp/acme.log" 2>&1 ||
  { cat "$tmp/acme.log"; fail "an unknown model_type with a regular layout was refused"; }
grep -q "exported 14 matrices" "$tmp/acme.log" || fail "unknown model_type: not 14 matrices"
ok "unknown model_type acme_decoder accepted (14 matrices)"

"$client_py" "$src/tests/client/families_check.py" "$tmp/cases" || fail "the real clients reject an output"
ok "every family loads in transformers + bitsandbytes + PEFT as claimed ($((SECONDS - t0)) s in all)"
