#!/usr/bin/env bash
# End to end of `loftq quantize` (issue #5), through the real binary under mpirun:
#  1. PEFT semantics (--svd exact --no-keep-best --no-scale-compensation --backbone bnb4) agree
#     with an independent numpy reference of PEFT's algorithm within 1e-5 (tests/loftq_reference.py),
#     for nf4 (--backbone bnb4) and LLM.int8 (--quant int8 --backbone int8: num_bits=8)
#  2. with our defaults, the as-loaded error of every matrix is <= QLoRA's
#  3. -np 1, 2, 4 give byte-identical run-file datasets, with and without split matrices, and
#     --io scatter gives the same bytes as --io direct
#  4. a job killed with SIGKILL mid-way and resumed with --resume ends byte-identical to an
#     uninterrupted run
#  5. a failing rank (NaN in a weight) ends the whole job non-zero with a message, never a hang
#  6. an existing run file without --resume, and --resume with other options, are refused
#  (2 also checks the --log-json records and that no temporary file is left behind)
set -euo pipefail
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"

# 1. PEFT's algorithm, bit for bit where the math allows.
mpi 1 quantize --model "$model" --work "$tmp/peft.h5" --rank 8 --iters 5 --svd exact \
  --no-keep-best --no-scale-compensation --backbone bnb4 > "$tmp/peft.log" 2>&1 || { cat "$tmp/peft.log"; fail "quantize (PEFT semantics)"; }
"$py" "$src/tests/loftq_reference.py" --model "$model" --run "$tmp/peft.h5" --tol 1e-5 > "$tmp/peft.cmp" \
  || { cat "$tmp/peft.cmp"; fail "run file disagrees with the PEFT reference"; }
ok "PEFT semantics match the numpy reference: $(tail -1 "$tmp/peft.cmp")"
# PEFT's loftq_init(num_bits=8): LLM.int8 with the same flags and the int8 backbone (held as is).
mpi 1 quantize --model "$model" --work "$tmp/peft8.h5" --rank 8 --iters 5 --svd exact --quant int8 \
  --no-keep-best --no-scale-compensation --backbone int8 > "$tmp/peft8.log" 2>&1 || { cat "$tmp/peft8.log"; fail "quantize (PEFT semantics, int8)"; }
"$py" "$src/tests/loftq_reference.py" --model "$model" --run "$tmp/peft8.h5" --tol 1e-5 > "$tmp/peft8.cmp" \
  || { cat "$tmp/peft8.cmp"; fail "int8 run file disagrees with the PEFT reference"; }
ok "PEFT num_bits=8 semantics match the numpy reference: $(tail -1 "$tmp/peft8.cmp")"

# 2. Our defaults never lose to QLoRA as loaded.
mpi 2 quantize --model "$model" --work "$tmp/ours.h5" --rank 8 --iters 5 --log-json "$tmp/ours.jsonl" > "$tmp/ours.log" 2>&1 || { cat "$tmp/ours.log"; fail "quantize (defaults)"; }
# --log-json: one JSON line per matrix from both ranks, renamed into place, no temporary left.
"$py" - "$tmp/ours.h5" "$tmp/ours.jsonl" <<'PY' || fail "--log-json log is not one JSON record per matrix"
import json, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    names = set(f["matrices"].keys())
records = [json.loads(line) for line in open(sys.argv[2])]
logged = sorted(r["matrix"] for r in records)
sys.exit(0 if len(logged) == len(names) and set(logged) == names else 1)
PY
! compgen -G "$tmp/.ours.*" >/dev/null || fail "a temporary of the run file or the log was left behind"
"$py" - "$tmp/ours.h5" <<'PY' || fail "a matrix is worse than QLoRA as loaded"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f["complete"][...].all(), "incomplete run file"
    worse = [n for n, g in f["matrices"].items() if g["loaded_error"][()] > g["qlora_error"][()]]
    best = all(g["loaded_error"][()] <= min(g["iteration_error"][...]) * (1 + 1e-6) for g in f["matrices"].values())
    print("matrices worse than QLoRA:", worse)
    sys.exit(1 if worse or not best else 0)
PY
grep -q "worse than QLoRA on 0" "$tmp/ours.log" || fail "summary does not report 0 matrices worse than QLoRA"
ok "as-loaded error <= QLoRA on every matrix (best iterate kept, scaling compensated)"

# 3. Bits do not depend on the rank count (at equal BLAS threads per rank, launch/mpirun.sh's
#    default of one), with and without split matrices, nor on --io.
for split in 0 20KB; do
  for np in 1 2 4; do
    mpi "$np" quantize --model "$model" --work "$tmp/np$np-$split.h5" --rank 8 --iters 3 \
      --split-threshold "$split" > "$tmp/np$np-$split.log" 2>&1 || { cat "$tmp/np$np-$split.log"; fail "quantize -np $np split $split"; }
    digest "$tmp/np$np-$split.h5" > "$tmp/np$np-$split.sha"
  done
  cmp -s "$tmp/np1-$split.sha" "$tmp/np2-$split.sha" || fail "-np 2 differs from -np 1 (split $split)"
  cmp -s "$tmp/np1-$split.sha" "$tmp/np4-$split.sha" || fail "-np 4 differs from -np 1 (split $split)"
done
grep -q " 15 split" "$tmp/np2-20KB.log" || fail "expected 15 split matrices at --split-threshold 20KB"
mpi 3 quantize --model "$model" --work "$tmp/scatter.h5" --rank 8 --iters 3 --split-threshold 20KB \
  --io scatter > "$tmp/scatter.log" 2>&1 || { cat "$tmp/scatter.log"; fail "quantize --io scatter"; }
digest "$tmp/scatter.h5" | cmp -s - "$tmp/np1-20KB.sha" || fail "--io scatter differs from --io direct"
ok "byte-identical run files for -np 1/2/4, without and with 15 split matrices, and with --io scatter"

# 4. SIGKILL mid-way, then --resume: same bytes as an uninterrupted run.
mkdir -p "$tmp/synth"
"$bin" synth --preset tiny --layers 12 --output "$tmp/synth/tiny12" > /dev/null
args=(quantize --model "$tmp/synth/tiny12" --rank 16 --iters 5 --split-threshold 100KB)
mpi 2 "${args[@]}" --work "$tmp/whole.h5" > "$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log"; fail "uninterrupted run"; }
setsid bash -c "LOFTQ_BINARY='$bin' bash '$src/launch/mpirun.sh' -np 2 ${args[*]} --work '$tmp/killed.h5'" > "$tmp/killed.log" 2>&1 &
job=$!
done_count=0
for _ in $(seq 1 600); do
  read -r done_count total < <("$py" "$src/tests/runfile_complete.py" "$tmp/killed.h5")
  (( done_count >= 10 )) && break
  sleep 0.05
done
kill -KILL -- "-$job" 2>/dev/null || true
wait "$job" 2>/dev/null || true
read -r done_count total < <("$py" "$src/tests/runfile_complete.py" "$tmp/killed.h5")
(( done_count > 0 && done_count < total )) || fail "kill landed at $done_count/$total complete matrices: not mid-way"
mpi 2 "${args[@]}" --work "$tmp/killed.h5" --resume > "$tmp/resumed.log" 2>&1 || { cat "$tmp/resumed.log"; fail "resume"; }
grep -q "resuming" "$tmp/resumed.log" || fail "resume did not report the matrices it skipped"
cmp -s <(digest "$tmp/whole.h5") <(digest "$tmp/killed.h5") || fail "resumed run file differs from the uninterrupted one"
ok "SIGKILL at $done_count/$total matrices + --resume == uninterrupted run, byte for byte"

# 5. A failing rank ends the job: NaN in one target weight.
cp -r "$model" "$tmp/nan"
"$py" - "$tmp/nan/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
meta = json.loads(data[8:8 + n])["model.layers.3.mlp.up_proj.weight"]
assert meta["dtype"] == "F32"
off = 8 + n + meta["data_offsets"][0] + 4 * 77
data[off:off + 4] = struct.pack("<f", float("nan"))
open(path, "wb").write(bytes(data))
PY
set +e
LOFTQ_BINARY=$bin timeout 60 bash "$src/launch/mpirun.sh" -np 2 quantize --model "$tmp/nan" \
  --work "$tmp/nan.h5" --rank 8 --iters 2 > "$tmp/nan.log" 2>&1
code=$?
set -e
(( code != 0 && code != 124 )) || { cat "$tmp/nan.log"; fail "NaN weight: exit $code (124 = hung)"; }
grep -q "loftq: error: .*model.layers.3.mlp.up_proj.weight.*NaN" "$tmp/nan.log" || { cat "$tmp/nan.log"; fail "NaN weight: no message naming the tensor"; }
ok "a failing rank ends the job (exit $code) naming the tensor"

# 6. Refusals.
set +e
out=$("$bin" quantize --model "$model" --work "$tmp/ours.h5" --rank 8 --iters 5 2>&1); c1=$?
out2=$("$bin" quantize --model "$model" --work "$tmp/ours.h5" --rank 4 --iters 5 --resume 2>&1); c2=$?
set -e
if (( c1 == 0 )) || ! grep -q -- "--resume" <<<"$out"; then
  fail "existing run file without --resume: exit $c1: $out"
fi
if (( c2 == 0 )) || ! grep -q -- "--rank" <<<"$out2"; then
  fail "--resume with another --rank: exit $c2: $out2"
fi
[[ $(wc -l <<<"$out") -eq 1 && $(wc -l <<<"$out2") -eq 1 ]] || fail "refusals should be one line"
ok "existing run file refused without --resume; --resume with another --rank refused naming it"
echo "e2e_quantize: 6 passed, 0 failed"
