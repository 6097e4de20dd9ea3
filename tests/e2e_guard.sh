#!/usr/bin/env bash
# End to end of "nothing lost, nothing silently wrong" (issue #16), through the real binary:
#  1. output paths checked against the inputs and each other, by identity: --output containing,
#     equal to (through a symlink) or inside the model, --work inside the model or the output,
#     --log-json equal to --work or a file of the model: one line, exit 2, nothing created or
#     deleted; under mpirun -np 2 the same line once, no MPI_Abort
#  2. a run file in use by another job (its lock held) is refused naming the holder, unchanged
#  3. a run file knows its model: export and --resume against another model with the same names
#     and shapes are refused naming a tensor
#  4. a run file knows its data: a flipped code byte, a NaN in A, a complete flag over data never
#     written are refused by export naming the matrix; --resume redoes a damaged matrix and ends
#     byte-identical to the undamaged run file
set -euo pipefail
bin=${LOFTQ_BINARY:?}
src=${LOFTQ_SOURCE_DIR:?}
data=${LOFTQ_TEST_DATA:?}
py=/usr/bin/python3
tmp=$(mktemp -d)
holder=
trap '[[ -n $holder ]] && kill "$holder" 2>/dev/null; rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
digest() { "$py" "$src/tests/runfile_digest.py" "$1"; }
# A refused command: exit 2, one line on stderr containing $2, nothing at $3.
refused() {  # "command" "text" [path] [exit code]
  local out rc=0
  out=$(eval "$1" 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq ${4:-2} ]] || fail "'$1' exited $rc, expected ${4:-2} ($out)"
  [[ $(printf '%s\n' "$out" | wc -l) -eq 1 ]] || fail "'$1' printed more than one line: $out"
  [[ $out == *"$2"* ]] || fail "'$1' said '$out', expected '$2' in it"
  [[ -z ${3:-} || ! -e $3 ]] || fail "'$1' left $3"
}
tree_sum() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 md5sum | md5sum); }

# A model copy inside a parent folder P that a careless --output could name.
mkdir -p "$tmp/P"
cp -r "$data/stories260K" "$tmp/P/model"
model=$tmp/P/model
before=$(tree_sum "$tmp/P")

# --- 1. paths ------------------------------------------------------------------------------------
refused "'$bin' run --model '$model' --output '$tmp/P' --overwrite --rank 8 --iters 1" \
  "option --output: '$tmp/P' contains the model folder of --model" "$tmp/P.run.h5"
refused "'$bin' run --model '$model' --output '$tmp/P/model/../' --overwrite" "contains the model folder"
refused "'$bin' run --model '$model' --output '$model/out' --rank 8" "is inside the model folder"
ln -s "$model" "$tmp/link"
refused "'$bin' run --model '$model' --output '$tmp/link' --overwrite" "option --output: '$tmp/link' is the model folder"
mkdir "$tmp/out"
refused "'$bin' run --model '$model' --output '$tmp/out' --overwrite --work '$tmp/out/run.h5'" \
  "option --work: '$tmp/out/run.h5' is inside the output folder of --output" "$tmp/out/run.h5"
refused "'$bin' quantize --model '$model' --work '$model/run.h5'" "option --work" "$model/run.h5"
refused "'$bin' quantize --model '$model' --work '$tmp/r.h5' --log-json '$tmp/./r.h5'" \
  "option --log-json: '$tmp/./r.h5' is the run file of --work" "$tmp/r.h5"
refused "'$bin' quantize --model '$model' --work '$tmp/r.h5' --log-json '$model/config.json'" \
  "option --log-json" "$tmp/r.h5"
refused "'$bin' run --model '$model' --output '$tmp/o2' --log-json '$tmp/o2/log.jsonl'" \
  "is inside the output folder" "$tmp/o2.run.h5"
[[ $(tree_sum "$tmp/P") == "$before" ]] || fail "a refused command changed the model folder"
# Under mpirun: every rank exits 2 with the same decision, rank 0 prints it once, no abort banner.
out=$(LOFTQ_BINARY=$bin timeout 120 bash "$src/launch/mpirun.sh" -np 2 run --model "$model" \
  --output "$tmp/P" --overwrite 2>&1) && fail "mpirun -np 2 run --output P (containing the model) succeeded"
[[ $(grep -c "contains the model folder" <<<"$out") -eq 1 ]] || fail "under mpirun, not said once: $out"
! grep -q MPI_ABORT <<<"$out" || fail "under mpirun the refusal went through MPI_Abort: $out"
[[ ! -e $tmp/P.run.h5 && $(tree_sum "$tmp/P") == "$before" ]] || fail "mpirun refusal changed something"
ok "output, run file and log paths are checked against the model and each other, by identity"

# --- 2. the run file's lock ----------------------------------------------------------------------
"$bin" quantize --model "$model" --work "$tmp/s.h5" --rank 8 --iters 2 >/dev/null
good=$(digest "$tmp/s.h5")
sum=$(md5sum <"$tmp/s.h5")
# Another job holds the lock (one process with flock(2) stands in for it, with the record a loftq
# job writes).
echo "pid 4242 on host elsewhere" >"$tmp/s.h5.lock"
"$py" -c 'import fcntl, sys, time
f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); open(sys.argv[2], "w").close(); time.sleep(120)' \
  "$tmp/s.h5.lock" "$tmp/locked" &
holder=$!
for _ in $(seq 100); do [[ -e $tmp/locked ]] && break; sleep 0.05; done
refused "'$bin' quantize --model '$model' --work '$tmp/s.h5' --rank 8 --iters 2 --resume" \
  "run file $tmp/s.h5 is in use by another job (pid 4242 on host elsewhere)"
refused "'$bin' export --model '$model' --work '$tmp/s.h5' --output '$tmp/e0'" "is in use by another job" "$tmp/e0"
kill "$holder"; wait "$holder" 2>/dev/null || true; holder=
[[ $(md5sum <"$tmp/s.h5") == "$sum" ]] || fail "a refused job changed the run file"
# A real job holds it while it runs and records who it is; it removes the lock file at the end.
"$bin" synth --preset tiny --layers 2 --output "$tmp/tiny" >/dev/null
"$bin" quantize --model "$tmp/tiny" --work "$tmp/t.h5" --rank 8 --iters 150 --svd exact >/dev/null &
job=$!
for _ in $(seq 100); do [[ -s $tmp/t.h5.lock ]] && break; sleep 0.05; done
if kill -0 "$job" 2>/dev/null; then
  out=$("$bin" quantize --model "$tmp/tiny" --work "$tmp/t.h5" --rank 8 --iters 150 --svd exact --resume 2>&1) \
    && fail "a second quantize on a run file in use succeeded"
  [[ $out == *"is in use by another job (pid $job on host "* ]] || fail "second job said: $out"
  echo "ok: a second quantize during a running one was refused"
fi
wait "$job" || fail "the first job failed"
[[ ! -e $tmp/t.h5.lock ]] || fail "the lock file was left behind"
ok "a second job on a run file in use is refused naming the holder; nothing changed"

# --- 3. the run file knows its model ---------------------------------------------------------------
# Another model: the same names, dtypes and shapes, two values of one target swapped.
cp -r "$model" "$tmp/other"
target=$("$py" - "$tmp/other/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    name = sorted(k for k in header if k.endswith("k_proj.weight"))[0]
    e = header[name]
    size = {"BF16": 2, "F16": 2, "F32": 4}[e["dtype"]]
    begin = 8 + n + e["data_offsets"][0]
    f.seek(begin); a = f.read(size); b = f.read(size)
    assert a != b
    f.seek(begin); f.write(b + a)
print(name)
PY
)
refused "'$bin' export --model '$tmp/other' --work '$tmp/s.h5' --output '$tmp/e1'" \
  "run file $tmp/s.h5 was made from another model: tensor $target differs" "$tmp/e1"
refused "'$bin' quantize --model '$tmp/other' --work '$tmp/s.h5' --rank 8 --iters 2 --resume" \
  "was made from another model: tensor $target differs"
# Under mpirun the complete matrices are checked by both ranks; the refusal is said once.
out=$(LOFTQ_BINARY=$bin timeout 120 bash "$src/launch/mpirun.sh" -np 2 quantize --model "$tmp/other" \
  --work "$tmp/s.h5" --rank 8 --iters 2 --resume 2>&1) && fail "mpirun -np 2 --resume with another model succeeded"
[[ $(grep -c "was made from another model: tensor $target differs" <<<"$out") -eq 1 ]] || fail "under mpirun: $out"
! grep -q MPI_ABORT <<<"$out" || fail "under mpirun the refusal went through MPI_Abort: $out"
[[ $(md5sum <"$tmp/s.h5") == "$sum" ]] || fail "a refused resume changed the run file"
ok "export and --resume against another model with the same names and shapes are refused naming $target"

# --- 4. the run file knows its data ----------------------------------------------------------------
damage() {  # copy how -> prints the damaged matrix
  cp "$tmp/s.h5" "$1"
  "$py" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    name = sorted(f["matrices"])[3]
    g = f["matrices"][name]
    if sys.argv[2] == "codes":
        c = g["codes"][...]; c[17] ^= 0x10; g["codes"][...] = c
    elif sys.argv[2] == "nan":
        a = g["A"][...]; a[0, 0] = np.nan; g["A"][...] = a
    else:  # never written, but marked complete
        for ds in g:
            g[ds][...] = np.zeros(g[ds].shape, g[ds].dtype)
    assert f["complete"][3] == 1
print(name)
PY
}
for how in codes nan unwritten; do
  name=$(damage "$tmp/d-$how.h5" $how)
  refused "'$bin' export --model '$model' --work '$tmp/d-$how.h5' --output '$tmp/x-$how'" \
    "run file $tmp/d-$how.h5 is damaged: matrix $name fails its checksum" "$tmp/x-$how" 1
done
out=$(LOFTQ_BINARY=$bin timeout 120 bash "$src/launch/mpirun.sh" -np 2 quantize --model "$model" \
  --work "$tmp/d-codes.h5" --rank 8 --iters 2 --resume 2>&1) || fail "resume of a damaged run file: $out"
[[ $out == *"matrix $name fails its checksum; redoing it"* ]] || fail "resume did not say it redoes $name: $out"
[[ $(digest "$tmp/d-codes.h5") == "$good" ]] || fail "resume of a damaged matrix is not byte-identical"
"$bin" export --model "$model" --work "$tmp/d-codes.h5" --output "$tmp/e2" >/dev/null
ok "damaged matrices are refused by export and redone by --resume"

# verify --json may not replace a file of what it verifies.
sum_e2=$(tree_sum "$tmp/e2")
refused "'$bin' verify --model '$model' --output '$tmp/e2' --json '$tmp/e2/report.json'" \
  "option --json: '$tmp/e2/report.json' is inside --output"
refused "'$bin' verify --model '$model' --output '$tmp/e2' --json '$model/config.json'" \
  "option --json: '$model/config.json' is inside --model"
[[ $(tree_sum "$tmp/e2") == "$sum_e2" ]] || fail "a refused verify changed a file"
"$bin" verify --model "$model" --output "$tmp/e2" --json "$tmp/verify.json" >/dev/null
[[ -s $tmp/verify.json ]] || fail "verify --json beside the folders wrote nothing"
ok "verify --json refuses a path inside the model or the output"
