#!/usr/bin/env bash
# End-to-end export / verify / run / inspect (issue #6), on stories260K (a real trained Llama) and
# a synthetic llama2-7b with 2 layers:
#   1. stories260K bf16 run -> export in its own bf16 form and in bnb4 form (sharded, and with a
#      bfloat16 adapter); a double-quantized bnb4 run; a --blocksize 128 run (bnb4 only); an
#      fp16 backbone; fp4 as bnb4; a 2-bit run (bf16 re-quantized as nf4, and bnb4 with NF2 as NF4
#      codes); uniform2 refused as bnb4; an LLM.int8 run exported bf16 and int8 (nf4 as int8,
#      int8 as bnb4 refused).
#      Every folder passes tests/check_export.py (FORMATS.md 2, 4, 5 written from the spec, run
#      file contents, non-targets byte-identical) and `loftq verify` reports the run file's
#      errors (1e-6 relative) with every matrix below QLoRA.
#   2. verify fails (exit 1, WORSE) when the adapter no longer matches (lora_alpha edited).
#   3. refusals, one line each, exit 2, no folder: existing --output without --overwrite, forms
#      the run was not optimised for, blocksize 128 in a bf16 backbone, double quant in bf16.
#   4. `loftq run` on 2 MPI ranks: run file beside the output, export by rank 0, inspect.
#   5. llama2-7b 2 layers (all 14 linear layers, r 16, T 1, 2 ranks): bf16 and bnb4 exports checked
#      and verified; an export killed with SIGKILL mid-write leaves no folder at the output path,
#      and the next export removes the dead process's temporary sibling.
set -euo pipefail
src=${LOFTQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
binary=${LOFTQ_BINARY:-$src/build/loftq}
data=${LOFTQ_TEST_DATA:-$src/tests/data}
mpiexec=${MPIEXEC:-mpirun}
py=/usr/bin/python3
check="$py $src/tests/check_export.py"
stories=$data/stories260K

fail() { echo "e2e_export: FAIL: $*" >&2; exit 1; }
[[ -x "$binary" ]] || fail "$binary not built"
tmp=$(mktemp -d /tmp/loftq-e2e-export.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
step() { echo "e2e_export: [$((SECONDS - start)) s] $*"; }

# verify's --json against the run file: same errors (1e-6 relative), every matrix below QLoRA.
same_as_run() {  # verify.json run.h5
    $py - "$1" "$2" <<'EOF'
import json, sys, h5py
v = json.load(open(sys.argv[1]))
run = h5py.File(sys.argv[2], "r")["matrices"]
names = {m["name"] for m in v["matrices"]}
if names != set(run):
    sys.exit(f"verify saw {len(names)} matrices, run file has {len(run)}")
for m in v["matrices"]:
    g = run[m["name"]]
    for key, ds in (("loftq_error", "loaded_error"), ("qlora_error", "qlora_error")):
        want = float(g[ds][()])
        if abs(m[key] - want) > 1e-6 * want + 1e-9:
            sys.exit(f"{m['name']}: verify {key} {m[key]!r} != run file {ds} {want!r}")
    if not m["loftq_error"] < m["qlora_error"]:
        sys.exit(f"{m['name']}: LoftQ as loaded {m['loftq_error']} is not below QLoRA {m['qlora_error']}")
EOF
}

# A refused command: exit 2, one line on stderr containing $2, nothing at $3.
refused() {  # "command" "text" path
    local out rc=0
    out=$(eval "$1" 2>&1 >/dev/null) || rc=$?
    [[ $rc -eq 2 ]] || fail "'$1' exited $rc, expected 2 ($out)"
    [[ $(printf '%s\n' "$out" | wc -l) -eq 1 ]] || fail "'$1' printed more than one line: $out"
    [[ $out == *"$2"* ]] || fail "'$1' said '$out', expected '$2' in it"
    [[ -z ${3:-} || ! -e $3 ]] || fail "'$1' left $3"
}

# --- 1. stories260K -------------------------------------------------------------------------
step "stories260K: quantize (bf16 backbone), export bf16 / bnb4"
"$binary" quantize --model "$stories" --work "$tmp/s.h5" --rank 8 --iters 3 >/dev/null
"$binary" export --work "$tmp/s.h5" --model "$stories" --output "$tmp/s_bf16" >/dev/null
$check --output "$tmp/s_bf16" --model "$stories" --work "$tmp/s.h5" --backbone bf16
"$binary" verify --model "$stories" --output "$tmp/s_bf16" --json "$tmp/v1.json" >/dev/null
same_as_run "$tmp/v1.json" "$tmp/s.h5"

"$binary" export --work "$tmp/s.h5" --model "$stories" --output "$tmp/s_bnb4" --backbone bnb4 \
    --max-shard-size 100KB >/dev/null
ls "$tmp/s_bnb4"/model-00001-of-0000*.safetensors >/dev/null || fail "--max-shard-size 100KB gave one shard"
$check --output "$tmp/s_bnb4" --model "$stories" --work "$tmp/s.h5" --backbone bnb4
"$binary" verify --model "$stories" --output "$tmp/s_bnb4" --json "$tmp/v2.json" >/dev/null
same_as_run "$tmp/v2.json" "$tmp/s.h5"
"$binary" inspect "$tmp/s_bnb4" >"$tmp/inspect1.txt"
grep -q "backbone: bnb4 (bitsandbytes pre-quantized nf4, double quant no" "$tmp/inspect1.txt" \
    || fail "inspect does not describe the bnb4 folder"

"$binary" export --work "$tmp/s.h5" --model "$stories" --output "$tmp/s_bf16ad" --adapter-dtype bfloat16 >/dev/null
$check --output "$tmp/s_bf16ad" --model "$stories" --work "$tmp/s.h5" --backbone bf16 --adapter-dtype bfloat16
"$binary" verify --model "$stories" --output "$tmp/s_bf16ad" >/dev/null || fail "bfloat16 adapter worse than QLoRA"

step "stories260K: double-quantized bnb4 run"
"$binary" quantize --model "$stories" --work "$tmp/dq.h5" --rank 8 --iters 2 --double-quant --backbone bnb4 >/dev/null
"$binary" export --work "$tmp/dq.h5" --model "$stories" --output "$tmp/dq" >/dev/null
$check --output "$tmp/dq" --model "$stories" --work "$tmp/dq.h5" --backbone bnb4
"$binary" verify --model "$stories" --output "$tmp/dq" --json "$tmp/v3.json" >/dev/null
same_as_run "$tmp/v3.json" "$tmp/dq.h5"

step "stories260K: blocksize 128 (bnb4 only)"
"$binary" quantize --model "$stories" --work "$tmp/b128.h5" --rank 4 --iters 1 --blocksize 128 >/dev/null
refused "'$binary' export --work '$tmp/b128.h5' --model '$stories' --output '$tmp/b128'" "blocksize 64" "$tmp/b128"
"$binary" export --work "$tmp/b128.h5" --model "$stories" --output "$tmp/b128" --backbone bnb4 >/dev/null
$check --output "$tmp/b128" --model "$stories" --work "$tmp/b128.h5" --backbone bnb4
"$binary" verify --model "$stories" --output "$tmp/b128" --json "$tmp/v4.json" >/dev/null
same_as_run "$tmp/v4.json" "$tmp/b128.h5"

step "stories260K: fp16 backbone; fp4 exported as bnb4"
"$binary" quantize --model "$stories" --work "$tmp/f16.h5" --rank 8 --iters 2 --backbone fp16 >/dev/null
"$binary" export --work "$tmp/f16.h5" --model "$stories" --output "$tmp/f16" >/dev/null
$check --output "$tmp/f16" --model "$stories" --work "$tmp/f16.h5" --backbone fp16
"$binary" verify --model "$stories" --output "$tmp/f16" --json "$tmp/v7.json" >/dev/null
same_as_run "$tmp/v7.json" "$tmp/f16.h5"
"$binary" quantize --model "$stories" --work "$tmp/fp4.h5" --rank 8 --iters 2 --quant fp4 >/dev/null
"$binary" export --work "$tmp/fp4.h5" --model "$stories" --output "$tmp/fp4" --backbone bnb4 >/dev/null
$check --output "$tmp/fp4" --model "$stories" --work "$tmp/fp4.h5" --backbone bnb4
"$binary" verify --model "$stories" --output "$tmp/fp4" --json "$tmp/v8.json" >/dev/null
same_as_run "$tmp/v8.json" "$tmp/fp4.h5"

step "stories260K: 2-bit (nf2) run: loads through NF4, bf16 or bnb4 (NF2 as NF4 codes)"
"$binary" quantize --model "$stories" --work "$tmp/n2.h5" --rank 8 --iters 2 --bits 2 >/dev/null
"$binary" export --work "$tmp/n2.h5" --model "$stories" --output "$tmp/n2" >/dev/null
$check --output "$tmp/n2" --model "$stories" --work "$tmp/n2.h5" --backbone bf16
grep -q "nf2 matrices load through bitsandbytes NF4" "$tmp/n2/report.json" || fail "report.json does not say nf2 loads through NF4"
"$binary" verify --model "$stories" --output "$tmp/n2" --json "$tmp/v6.json" >"$tmp/n2.txt"
grep -q "nf4/64 (nf2 values)" "$tmp/n2.txt" || fail "verify does not load nf2 through load_in_4bit nf4"
same_as_run "$tmp/v6.json" "$tmp/n2.h5"
"$binary" export --work "$tmp/n2.h5" --model "$stories" --output "$tmp/n2b" --backbone bnb4 >/dev/null
$check --output "$tmp/n2b" --model "$stories" --work "$tmp/n2.h5" --backbone bnb4
"$binary" verify --model "$stories" --output "$tmp/n2b" --json "$tmp/v6b.json" >/dev/null
same_as_run "$tmp/v6b.json" "$tmp/n2.h5"
"$binary" quantize --model "$stories" --work "$tmp/u2.h5" --rank 8 --iters 1 --bits 2 --quant uniform >/dev/null
refused "'$binary' export --work '$tmp/u2.h5' --model '$stories' --output '$tmp/u2b' --backbone bnb4" "cannot hold uniform2" "$tmp/u2b"

step "stories260K: LLM.int8 run: bf16 backbone (load_in_8bit) and pre-quantized int8 backbone"
"$binary" quantize --model "$stories" --work "$tmp/i8.h5" --rank 8 --iters 2 --quant int8 >/dev/null
"$binary" export --work "$tmp/i8.h5" --model "$stories" --output "$tmp/i8" >/dev/null
$check --output "$tmp/i8" --model "$stories" --work "$tmp/i8.h5" --backbone bf16
grep -q "load_in_8bit=True" "$tmp/i8/report.json" || fail "report.json does not say load_in_8bit"
"$binary" verify --model "$stories" --output "$tmp/i8" --json "$tmp/v9.json" >/dev/null
same_as_run "$tmp/v9.json" "$tmp/i8.h5"
"$binary" export --work "$tmp/i8.h5" --model "$stories" --output "$tmp/i8b" --backbone int8 >/dev/null
"$binary" inspect "$tmp/i8b" | grep -q "backbone: int8 (bitsandbytes LLM.int8" || fail "inspect does not describe the int8 folder"
"$binary" verify --model "$stories" --output "$tmp/i8b" --json "$tmp/v10.json" >/dev/null
same_as_run "$tmp/v10.json" "$tmp/i8.h5"
refused "'$binary' export --work '$tmp/i8.h5' --model '$stories' --output '$tmp/i8c' --backbone bnb4" "cannot hold int8" "$tmp/i8c"
refused "'$binary' export --work '$tmp/s.h5' --model '$stories' --output '$tmp/i8d' --backbone int8" "int8 backbone holds only" "$tmp/i8d"

# --- 2. verify can fail -----------------------------------------------------------------------
step "verify fails on a mismatched adapter"
cp -r "$tmp/s_bf16" "$tmp/s_bad"
sed -i 's/"lora_alpha": 16/"lora_alpha": 160/' "$tmp/s_bad/loftq_init/adapter_config.json"
rc=0
"$binary" verify --model "$stories" --output "$tmp/s_bad" >"$tmp/bad.txt" || rc=$?
[[ $rc -eq 1 ]] || fail "verify of a 10x lora_alpha exited $rc, expected 1"
grep -q WORSE "$tmp/bad.txt" || fail "verify did not mark a matrix WORSE"

# --- 3. refusals ------------------------------------------------------------------------------
step "refusals"
sum_before=$(md5sum <"$tmp/s_bf16/model.safetensors")
refused "'$binary' export --work '$tmp/s.h5' --model '$stories' --output '$tmp/s_bf16'" "--output"
[[ $(md5sum <"$tmp/s_bf16/model.safetensors") == "$sum_before" ]] || fail "refused export changed the folder"
"$binary" export --work "$tmp/s.h5" --model "$stories" --output "$tmp/s_bf16" --overwrite --backbone bnb4 >/dev/null
$check --output "$tmp/s_bf16" --model "$stories" --work "$tmp/s.h5" --backbone bnb4
refused "'$binary' export --work '$tmp/dq.h5' --model '$stories' --output '$tmp/x1' --backbone bf16" "double-quantized" "$tmp/x1"
refused "'$binary' export --work '$tmp/s.h5' --model '$stories' --output '$tmp/x2' --backbone fp16" "option --backbone: fp16 backbone" "$tmp/x2"
refused "'$binary' export --work '$tmp/dq.h5' --model '$stories' --output '$tmp/x3' --backbone fp32" "option --backbone: fp32 backbone" "$tmp/x3"
refused "'$binary' run --model '$stories' --output '$tmp/x4' --double-quant" "double-quantized" "$tmp/x4.run.h5"
refused "'$binary' export --work '$tmp/s.h5' --model '$stories' --output '$tmp/nodir/x5'" "--output" "$tmp/nodir"

# --- 4. loftq run on 2 ranks ------------------------------------------------------------------
step "loftq run on 2 MPI ranks"
"$mpiexec" -np 2 "$binary" run --model "$stories" --output "$tmp/run_out" --rank 8 --iters 2 --lora-alpha 8 \
    >"$tmp/run.txt"
[[ -f "$tmp/run_out.run.h5" ]] || fail "loftq run did not leave its run file at <output>.run.h5"
[[ $(grep -c "exported 35 matrices" "$tmp/run.txt") -eq 1 ]] || fail "loftq run did not report one export"
$check --output "$tmp/run_out" --model "$stories" --work "$tmp/run_out.run.h5" --backbone bf16
"$binary" verify --model "$stories" --output "$tmp/run_out" --json "$tmp/v5.json" >/dev/null
same_as_run "$tmp/v5.json" "$tmp/run_out.run.h5"
refused "'$binary' run --model '$stories' --output '$tmp/run_out' --work '$tmp/x6.h5'" "--output" "$tmp/x6.h5"
"$binary" inspect "$tmp/run_out" >"$tmp/inspect2.txt"
grep -q "adapter: 35 modules, r=8, lora_alpha=8" "$tmp/inspect2.txt" || fail "inspect adapter line"

# --- 5. llama2-7b, 2 layers -------------------------------------------------------------------
step "llama2-7b 2 layers: synth + quantize (all-linear, r 16, T 1, 2 ranks)"
"$binary" synth --preset llama2-7b --layers 2 --output "$tmp/l7" >/dev/null
LOFTQ_BINARY=$binary bash "$src/launch/mpirun.sh" -np 2 quantize --model "$tmp/l7" --work "$tmp/l7.h5" \
    --rank 16 --iters 1 >/dev/null
for form in bf16 bnb4; do
    step "llama2-7b: export $form"
    "$binary" export --work "$tmp/l7.h5" --model "$tmp/l7" --output "$tmp/l7_$form" --backbone $form \
        --max-shard-size 500MB >/dev/null
    $check --output "$tmp/l7_$form" --model "$tmp/l7" --work "$tmp/l7.h5" --backbone $form
    "$binary" verify --model "$tmp/l7" --output "$tmp/l7_$form" --json "$tmp/v_$form.json" >/dev/null
    same_as_run "$tmp/v_$form.json" "$tmp/l7.h5"
    rm -rf "$tmp/l7_$form"
done

step "llama2-7b: SIGKILL during export"
"$binary" export --work "$tmp/l7.h5" --model "$tmp/l7" --output "$tmp/l7_kill" --max-shard-size 200MB >/dev/null &
pid=$!
# Kill once the temporary folder holds shard data: the export is then mid-write.
for _ in $(seq 1 600); do
    if compgen -G "$tmp/.l7_kill.tmp-*/.model-*" >/dev/null; then break; fi
    sleep 0.05
done
compgen -G "$tmp/.l7_kill.tmp-*" >/dev/null || fail "export never started writing"
kill -9 $pid
rc=0
wait $pid || rc=$?
[[ $rc -eq 137 ]] || fail "the export was not killed mid-write (exit $rc): make the model larger"
[[ ! -e "$tmp/l7_kill" ]] || fail "a killed export left a folder at the output path"
"$binary" export --work "$tmp/l7.h5" --model "$tmp/l7" --output "$tmp/l7_kill" --backbone bnb4 >/dev/null
! compgen -G "$tmp/.l7_kill.tmp-*" >/dev/null || fail "the dead export's temporary folder was not removed"
[[ -f "$tmp/l7_kill/report.json" ]] || fail "export after the kill did not complete"
step "OK"
