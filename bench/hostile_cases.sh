#!/usr/bin/env bash
# Issue #16's hostile cases, re-run as a whole: every case of the issue text with its expected
# outcome, through the real binary on stories260K. A refusal must be exactly one "loftq: error"
# line matching the pattern, a non-zero exit, no hang (60 s), and the named file left as it was;
# an acceptance must exit 0. Prints one line per case and a total; exit 1 if any case is wrong.
#   bash bench/hostile_cases.sh [BUILD/loftq] > bench/results/hostile_cases.log
# Cases that need a mounted tmpfs, kill timing or mpirun are in tests/e2e_diskfull.sh,
# tests/e2e_faults.sh, tests/e2e_reliability.sh and tests/e2e_guard.sh (ctest); they are named
# at the end, not repeated.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$root/build/loftq}
py=/usr/bin/python3
model=$root/tests/data/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
pass=0 wrong=0
report() {  # report OK|WRONG NAME DETAIL
  if [[ $1 == OK ]]; then pass=$((pass + 1)); else wrong=$((wrong + 1)); fi
  printf '%-5s %s%s\n' "$1" "$2" "${3:+: $3}"
}
# refuse NAME PATTERN COMMAND...: one error line matching PATTERN, exit != 0, within 60 s.
refuse() {
  local name=$1 pattern=$2 out rc=0
  shift 2
  out=$(timeout 60 "$@" 2>&1) || rc=$?
  if ((rc == 0)); then report WRONG "$name" "exit 0"
  elif ((rc == 124)); then report WRONG "$name" "hung (60 s)"
  elif [[ $(grep -c "loftq: error" <<<"$out") -ne 1 ]]; then report WRONG "$name" "not one error line: $(tr '\n' '|' <<<"$out" | cut -c1-200)"
  elif ! grep -Eq "loftq: error: .*$pattern" <<<"$out"; then report WRONG "$name" "$(grep "loftq: error" <<<"$out")"
  else report OK "$name" "exit $rc, $(grep "loftq: error" <<<"$out" | cut -c14-160)"
  fi
}
accept() {  # accept NAME COMMAND...
  local name=$1 out rc=0
  shift
  out=$(timeout 60 "$@" 2>&1) || rc=$?
  if ((rc == 0)); then report OK "$name" "exit 0"; else report WRONG "$name" "exit $rc: $(tail -1 <<<"$out")"; fi
}
unchanged() {  # unchanged NAME FILE SHA: FILE still has checksum SHA
  if [[ -e $2 && $(sha256sum <"$2") == "$3" ]]; then report OK "$1"; else report WRONG "$1" "$2 changed or gone"; fi
}
# edited COPY PYTHON: a copy of stories260K with its model.safetensors bytes edited by PYTHON
# (variables: data (bytearray), header (dict), base (offset of the data buffer)).
edited() {
  cp -r "$model" "$1"
  "$py" - "$1/model.safetensors" "$2" <<'PY'
import json, struct, sys
import numpy as np
path, code = sys.argv[1], sys.argv[2]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header, base = json.loads(data[8:8 + n]), 8 + n
exec(code)
open(path, "wb").write(bytes(data))
PY
}
q=(quantize --rank 8 --iters 1)
sha() { sha256sum <"$1"; }

echo "hostile cases of issue #16 on $(git -C "$root" rev-parse --short HEAD 2>/dev/null) ($bin)"
# --- data loss / silently wrong output ---
cp -r "$model" "$tmp/m"
msha=$(sha "$tmp/m/model.safetensors")
refuse "run --output containing the model, --overwrite" "model" "$bin" run --model "$tmp/m" --output "$tmp" --overwrite --rank 8 --iters 1
unchanged "  ... the model is intact" "$tmp/m/model.safetensors" "$msha"
mkdir -p "$tmp/o1"
refuse "run --work inside --output, --overwrite" "work|output" "$bin" run --model "$model" --output "$tmp/o1" --work "$tmp/o1/run.h5" --overwrite --rank 8 --iters 1
refuse "--log-json equal to --work" "log-json" "$bin" "${q[@]}" --model "$model" --work "$tmp/lw.h5" --log-json "$tmp/lw.h5"
csha=$(sha "$tmp/m/config.json")
refuse "--log-json naming a file of the model" "log-json" "$bin" "${q[@]}" --model "$tmp/m" --work "$tmp/lm.h5" --log-json "$tmp/m/config.json"
unchanged "  ... config.json is intact" "$tmp/m/config.json" "$csha"
"$bin" "${q[@]}" --model "$model" --work "$tmp/ref.h5" >/dev/null 2>&1
edited "$tmp/other" 'm = header["model.layers.0.self_attn.q_proj.weight"]; a = base + m["data_offsets"][0]; data[a:a+4] = struct.pack("<f", 0.5)'
refuse "--resume with another model of the same names and shapes" "another model|fingerprint|differ" "$bin" "${q[@]}" --model "$tmp/other" --work "$tmp/ref.h5" --resume
refuse "export with another model" "another model|fingerprint|differ" "$bin" export --model "$tmp/other" --work "$tmp/ref.h5" --output "$tmp/o2"
edited "$tmp/huge" 'm = header["model.layers.3.mlp.up_proj.weight"]; a = base + m["data_offsets"][0] + 4 * 77; data[a:a+4] = struct.pack("<f", 3.3e38)'
refuse "a 3.3e38 outlier" "model.layers.3.mlp.up_proj.weight" "$bin" "${q[@]}" --model "$tmp/huge" --work "$tmp/h1.h5"
refuse "a 3.3e38 outlier, --no-keep-best" "model.layers.3.mlp.up_proj.weight" "$bin" "${q[@]}" --model "$tmp/huge" --work "$tmp/h2.h5" --no-keep-best
edited "$tmp/sub" 'm = header["model.layers.3.mlp.up_proj.weight"]; a, b = (base + o for o in m["data_offsets"]); w = np.frombuffer(bytes(data[a:b]), np.float32); data[a:b] = (w / np.abs(w).max() * 1e-42).astype(np.float32).tobytes()'
refuse "subnormal weights (~1e-42)" "model.layers.3.mlp.up_proj.weight" "$bin" "${q[@]}" --model "$tmp/sub" --work "$tmp/s.h5"
refuse "--lora-alpha 1e-300" "lora-alpha" "$bin" "${q[@]}" --model "$model" --work "$tmp/a1.h5" --lora-alpha 1e-300
refuse "--lora-alpha 1e300" "lora-alpha" "$bin" "${q[@]}" --model "$model" --work "$tmp/a2.h5" --lora-alpha 1e300
for kind in nan_absmax nan_A flipped_codes forged_complete; do
  cp "$tmp/ref.h5" "$tmp/d-$kind.h5"
  "$py" - "$tmp/d-$kind.h5" "$kind" <<'PY'
import sys, h5py, numpy as np
path, kind = sys.argv[1], sys.argv[2]
with h5py.File(path, "r+") as f:
    g = f["matrices"]["model.layers.1.mlp.up_proj.weight"]
    if kind == "nan_absmax": a = g["absmax"][...]; a[3] = np.nan; g["absmax"][...] = a
    if kind == "nan_A": a = g["A"][...]; a[0, 0] = np.nan; g["A"][...] = a
    if kind == "flipped_codes": c = g["codes"][...]; c[10] ^= 0x10; g["codes"][...] = c
    if kind == "forged_complete":
        for d in ("codes", "absmax", "A", "B"): g[d][...] = np.zeros(g[d].shape, g[d].dtype)
PY
  refuse "export of a run file with damage ($kind)" "run file .*model.layers.1.mlp.up_proj.weight" "$bin" export --model "$model" --work "$tmp/d-$kind.h5" --output "$tmp/o-$kind"
done
# --- hangs and resources ---
cp -r "$model" "$tmp/fifo" && rm "$tmp/fifo/config.json" && mkfifo "$tmp/fifo/config.json"
refuse "config.json is a FIFO" "config.json.*not a regular file" "$bin" "${q[@]}" --model "$tmp/fifo" --work "$tmp/f.h5"
# A sharded model (the index names the shards): its index a FIFO.
mkdir -p "$tmp/fifo2" && cp "$model/config.json" "$tmp/fifo2/" && mkfifo "$tmp/fifo2/model.safetensors.index.json"
refuse "the index is a FIFO" "index.json.*not a regular file" "$bin" "${q[@]}" --model "$tmp/fifo2" --work "$tmp/f2.h5"
# --- messages and bounds ---
printf 'not hdf5' >"$tmp/junk.h5"
refuse "a run file that is not HDF5" "run file .*junk.h5" "$bin" export --model "$model" --work "$tmp/junk.h5" --output "$tmp/o3"
head -c 4000 "$tmp/ref.h5" >"$tmp/trunc.h5"
refuse "a truncated run file" "run file .*trunc.h5" "$bin" export --model "$model" --work "$tmp/trunc.h5" --output "$tmp/o4"
refuse "--oversample 2147483647" "oversample" "$bin" "${q[@]}" --model "$model" --work "$tmp/b1.h5" --oversample 2147483647
refuse "--power-iters 2147483647" "power-iters" "$bin" "${q[@]}" --model "$model" --work "$tmp/b2.h5" --power-iters 2147483647
cp -r "$model" "$tmp/big" && "$py" -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['num_attention_heads']=2**40; json.dump(c, open(p,'w'))" "$tmp/big/config.json"
refuse "config.json num_attention_heads = 2^40" "config.json.*num_attention_heads" "$bin" "${q[@]}" --model "$tmp/big" --work "$tmp/b3.h5"
refuse "--targets ''" "targets" "$bin" "${q[@]}" --model "$model" --work "$tmp/t1.h5" --targets ""
refuse "--targets q_proj," "targets" "$bin" "${q[@]}" --model "$model" --work "$tmp/t2.h5" --targets q_proj,
refuse "--seed -1" "seed" "$bin" "${q[@]}" --model "$model" --work "$tmp/t3.h5" --seed -1
refuse "a stray positional argument" "stray" "$bin" "${q[@]}" --model "$model" --work "$tmp/t4.h5" stray
refuse "--model naming a file" "model.safetensors" "$bin" "${q[@]}" --model "$model/model.safetensors" --work "$tmp/t5.h5"
cp -r "$model" "$tmp/cdir" && rm "$tmp/cdir/config.json" && mkdir "$tmp/cdir/config.json"
refuse "config.json is a folder" "config.json" "$bin" "${q[@]}" --model "$tmp/cdir" --work "$tmp/t6.h5"
edited "$tmp/l00" 'import re
text = data[8:base].decode().replace("model.layers.0.", "model.layers.00.", 1)
text += " " * (-(len(text)) % 8)
data[:] = struct.pack("<Q", len(text)) + text.encode() + data[base:]'
refuse "a tensor named model.layers.00." "layers.00" "$bin" "${q[@]}" --model "$tmp/l00" --work "$tmp/t7.h5"
edited "$tmp/bom" 'text = b"\xef\xbb\xbf" + bytes(data[8:base - 3]); data[:] = struct.pack("<Q", len(text)) + text + data[base:]'
refuse "a safetensors header starting with a UTF-8 BOM" "byte order mark" "$bin" inspect "$tmp/bom"
edited "$tmp/extra" 'header["model.norm.weight"]["extra"] = 1
text = json.dumps(header).encode(); text += b" " * (-len(text) % 8)
data[:] = struct.pack("<Q", len(text)) + text + data[base:]'
accept "an unknown key in a tensor entry (the reference loader ignores it)" "$bin" inspect "$tmp/extra"
# A job that runs a few seconds (r = 32, T = 60), to meet while it runs.
slow=(quantize --rank 32 --iters 60 --model "$model")
"$bin" "${slow[@]}" --work "$tmp/lock.h5" >/dev/null 2>&1 &
holder=$!
for _ in $(seq 1 500); do [[ -e $tmp/lock.h5 ]] && break; sleep 0.01; done
kill -STOP "$holder"  # it holds the lock while the second job tries
refuse "a second job on the same run file" "lock|another job|in use" "$bin" "${slow[@]}" --work "$tmp/lock.h5" --resume
kill -CONT "$holder"
wait "$holder"
"$bin" "${slow[@]}" --work "$tmp/sig.h5" >"$tmp/sig.log" 2>&1 &
pid=$!
for _ in $(seq 1 500); do [[ -e $tmp/sig.h5 ]] && break; sleep 0.01; done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
if ((rc == 0)) || grep -q "interrupted by SIGTERM" "$tmp/sig.log" && [[ $(grep -c "loftq: error" "$tmp/sig.log") -eq 1 ]]; then
  report OK "SIGTERM of a single process" "exit $rc$( ((rc)) && echo ", $(grep "loftq: error" "$tmp/sig.log" | cut -c14-90)")"
else
  report WRONG "SIGTERM of a single process" "exit $rc: $(tail -1 "$tmp/sig.log")"
fi
echo "not repeated here (ctest): full disk for quantize, export, --log-json, synth and mid-run: e2e_diskfull,"
echo "  synth's RLIMIT_FSIZE: test_synth; kill -9 / SIGTERM at random moments, a killed rank, damaged run files:"
echo "  e2e_faults; option errors under mpirun, signals under mpirun, a frozen rank (rank 0 too): e2e_reliability; paths: e2e_guard"
echo "hostile cases: $pass handled right, $wrong wrong"
((wrong == 0))
