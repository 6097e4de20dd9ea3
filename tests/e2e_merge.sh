#!/usr/bin/env bash
# `loftq merge` end to end (issue #14), without the real client (tests/e2e_merge_client.sh has it):
#  1. stories260K, `loftq run` bf16 backbone, its adapter perturbed ("trained") with rank_pattern,
#     alpha_pattern and rslora: merged with --base-load as-stored equals an independent numpy
#     W + s * B @ A (stored bf16 W, PEFT's pattern rules) within bf16 rounding, every other tensor
#     byte for byte, config.json without quantization_config;
#  2. the same merge (--base-load auto: re-quantized nf4 at load) on 1, 2 and 3 ranks, and a bnb4
#     double-quantized base: byte-identical output folders for any rank count; --to bnb4 on the
#     bnb4 base with half the modules adapted: the others' 4-bit tensors kept byte for byte;
#  3. a llama2-7b-shaped layer (synth): SIGKILL mid-merge (or SIGTERM: one line, exit != 0), then
#     --resume, gives the same bytes as an uninterrupted merge; a complete tensor damaged in the
#     work folder fails its checksum on resume and is redone;
#  4. bad inputs and options: one line, non-zero exit, no output folder;
#  5. refresh (--to loftq): as loaded, below bnb4 re-quantization of the merged weights on every matrix.
set -euo pipefail
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
make_adapter() { "$py" "$src/tests/tools/make_adapter.py" "$@"; }
digest() { (cd "$1" && sha256sum config.json ./*.safetensors ./*.index.json 2>/dev/null); }

# 1. against numpy
"$bin" run --model "$model" --output "$tmp/bf16" --rank 8 --iters 1 > "$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; fail "loftq run"; }
make_adapter --from "$tmp/bf16/loftq_init" --output "$tmp/ad" --alpha 12 --rslora \
  --rank-pattern '{"model.layers.1.self_attn.q_proj": 8}' --alpha-pattern '{"layers\\.[23]\\.mlp\\.down_proj": 4}'
"$bin" merge --base "$tmp/bf16" --adapter "$tmp/ad" --output "$tmp/plain" --base-load as-stored > "$tmp/m.log" 2>&1 ||
  { cat "$tmp/m.log"; fail "merge --base-load as-stored"; }
"$py" - "$tmp/bf16" "$tmp/ad" "$tmp/plain" <<'PY' || fail "as-stored merge differs from numpy"
import json, re, struct, sys
import numpy as np
base, ad, out = sys.argv[1:4]
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]) for k, v in h.items()}
def f32(t):
    d, s, b = t
    if d == "F32": return np.frombuffer(b, np.float32).reshape(s)
    assert d == "BF16", d
    return (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(s)
cfg = json.load(open(f"{ad}/adapter_config.json"))
def pattern(p, path, default):
    for k, v in p.items():
        if re.fullmatch(rf"(.*\.)?({k})", path): return v
    return default
W, A, O = tensors(f"{base}/model.safetensors"), tensors(f"{ad}/adapter_model.safetensors"), tensors(f"{out}/model.safetensors")
assert set(O) == set(W), "tensor names differ"
merged = 0
for name, t in W.items():
    path = name[:-len(".weight")]
    key = f"base_model.model.{path}.lora_A.weight"
    if key not in A:
        assert O[name] == t, f"{name} not copied bit for bit"
        continue
    a, b = f32(A[key]), f32(A[key.replace("lora_A", "lora_B")])
    r = pattern(cfg["rank_pattern"], path, cfg["r"])
    assert a.shape[0] == r, (name, a.shape, r)
    s = pattern(cfg["alpha_pattern"], path, cfg["lora_alpha"]) / (np.sqrt(r) if cfg["use_rslora"] else r)
    ref = f32(t).astype(np.float64) + s * (b.astype(np.float64) @ a.astype(np.float64))
    got = f32(O[name]).astype(np.float64)
    ulp = 2.0 ** (np.floor(np.log2(np.maximum(np.abs(ref), 1e-30))) - 7)
    assert np.all(np.abs(got - ref) <= ulp), f"{name}: worst {np.max(np.abs(got - ref) / ulp):.2f} ulp"
    merged += 1
assert merged == 35, merged
c = json.load(open(f"{out}/config.json"))
assert "quantization_config" not in c and c.get("torch_dtype", c.get("dtype")) == "bfloat16", c
print(f"ok: {merged} merged weights within one bf16 ulp of numpy (rank_pattern, alpha_pattern, rslora)")
PY
ok "as-stored merge == numpy W + s B A; other tensors bit for bit"

# 2. any rank count, auto (nf4 re-quantized at load) and a bnb4 double-quantized base
"$bin" run --model "$model" --output "$tmp/bnb4" --rank 8 --iters 1 --backbone bnb4 --double-quant > "$tmp/run2.log" 2>&1 ||
  { cat "$tmp/run2.log"; fail "loftq run bnb4"; }
for base in bf16 bnb4; do
  for np in 1 2 3; do
    mpi "$np" merge --base "$tmp/$base" --adapter "$tmp/ad" --output "$tmp/$base-np$np" > "$tmp/m$np.log" 2>&1 ||
      { cat "$tmp/m$np.log"; fail "merge -np $np ($base)"; }
  done
  grep -q "base $( [[ $base == bnb4 ]] && echo bnb4 || echo nf4)" "$tmp/m1.log" || fail "$base: --base-load auto chose $(head -1 "$tmp/m1.log")"
  cmp -s <(digest "$tmp/$base-np1") <(digest "$tmp/$base-np2") || fail "$base: -np 2 differs from -np 1"
  cmp -s <(digest "$tmp/$base-np1") <(digest "$tmp/$base-np3") || fail "$base: -np 3 differs from -np 1"
done
cmp -s "$tmp/bf16-np1/model.safetensors" "$tmp/plain/model.safetensors" && fail "nf4-held and as-stored merges are equal"
for np in 1 2; do  # --to bnb4 on the bnb4 base, half of the modules adapted: the rest copied as stored
  make_adapter --base "$tmp/bf16" --modules q_proj,up_proj --output "$tmp/half"
  mpi "$np" merge --base "$tmp/bnb4" --adapter "$tmp/half" --output "$tmp/b4-np$np" --to bnb4 > "$tmp/b$np.log" 2>&1 ||
    { cat "$tmp/b$np.log"; fail "merge --to bnb4 -np $np"; }
done
cmp -s <(digest "$tmp/b4-np1") <(digest "$tmp/b4-np2") || fail "--to bnb4: -np 2 differs from -np 1"
"$py" - "$tmp/bnb4" "$tmp/b4-np1" <<'PY' || fail "--to bnb4 output"
import json, struct, sys
def header(p):
    raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
    return {k: raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}
base, out = header(sys.argv[1] + "/model.safetensors"), header(sys.argv[2] + "/model.safetensors")
assert set(base) == set(out), set(base) ^ set(out)
kept = [k for k in base if ".k_proj.weight" in k]
changed = [k for k in base if k.endswith("q_proj.weight")]
assert kept and all(base[k] == out[k] for k in kept), "untouched 4-bit weights not copied as stored"
assert all(base[k] != out[k] for k in changed), "adapted weights unchanged"
assert json.load(open(sys.argv[2] + "/config.json"))["quantization_config"]["bnb_4bit_use_double_quant"] is True
print(f"ok: --to bnb4: {len(changed)} adapted weights re-quantized, {len(kept)} k_proj tensors (codes and components) kept byte for byte")
PY
ok "byte-identical outputs for -np 1/2/3 (nf4 at load, bnb4 double-quant), and --to bnb4 for -np 1/2"

# 3. SIGKILL mid-merge, --resume
"$bin" synth --preset llama2-7b --layers 1 --output "$tmp/s7" > /dev/null
make_adapter --base "$tmp/s7" --modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --r 16 --output "$tmp/s7ad"
args=(merge --base "$tmp/s7" --adapter "$tmp/s7ad" --max-shard-size 300MB)
mpi 2 "${args[@]}" --output "$tmp/s7-whole" > "$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log"; fail "uninterrupted merge"; }
setsid bash -c "LOFTQ_BINARY='$bin' bash '$src/launch/mpirun.sh' -np 2 ${args[*]} --output '$tmp/s7-killed'" > "$tmp/killed.log" 2>&1 &
job=$!
done_count=0
count_done() { [[ -f $tmp/s7-killed.merge-work/complete ]] && tr -d '\000' < "$tmp/s7-killed.merge-work/complete" | wc -c || echo 0; }
for _ in $(seq 1 1200); do
  done_count=$(count_done)
  ((done_count >= 3)) && break
  sleep 0.02
done
kill -KILL -- "-$job" 2>/dev/null || true
wait "$job" 2>/dev/null || true
done_count=$(count_done)
((done_count > 0 && done_count < 12)) || fail "kill landed at $done_count/12 complete tensors: not mid-way"
[[ -e $tmp/s7-killed ]] && fail "a killed merge left an output folder"
mpi 2 "${args[@]}" --output "$tmp/s7-killed" > "$tmp/resumed.log" 2>&1 && fail "an existing work folder was taken without --resume"
grep -q "add --resume" "$tmp/resumed.log" || { cat "$tmp/resumed.log"; fail "no --resume hint"; }
# One byte of a complete tensor damaged in the work folder: resume finds it by its checksum and redoes it.
damaged=$("$py" - "$tmp/s7-killed.merge-work" <<'PY'
import json, sys
w = sys.argv[1]
plan = json.load(open(f"{w}/plan.json"))
done = open(f"{w}/complete", "rb").read()
i = next(k for k, it in enumerate(plan["items"]) if done[k] and it["kind"] != "copy")
o = plan["items"][i]["outputs"][0]
with open(f"{w}/{plan['shard_files'][o['shard']]}", "r+b") as f:
    f.seek(o["offset"] + o["nbytes"] // 2)
    b = f.read(1)
    f.seek(o["offset"] + o["nbytes"] // 2)
    f.write(bytes([b[0] ^ 0x40]))
print(plan["items"][i]["tensor"])
PY
)
mpi 2 "${args[@]}" --output "$tmp/s7-killed" --resume > "$tmp/resumed.log" 2>&1 || { cat "$tmp/resumed.log"; fail "resume"; }
grep -q "resuming" "$tmp/resumed.log" || fail "resume did not report the tensors it skipped"
grep -q "tensor $damaged fails its checksum; redoing it" "$tmp/resumed.log" || { cat "$tmp/resumed.log"; fail "the damaged tensor was not redone"; }
[[ -e $tmp/s7-killed.merge-work ]] && fail "the work folder was left after the merge"
cmp -s <(digest "$tmp/s7-whole") <(digest "$tmp/s7-killed") || fail "resumed merge differs from the uninterrupted one"
ok "SIGKILL at $done_count/12 tensors (one complete tensor then damaged: redone) + --resume == uninterrupted merge, byte for byte ($(find "$tmp/s7-whole" -name '*.safetensors' | wc -l) shards)"
# SIGTERM: the rank finishes its tensor, says how to resume, exits non-zero; --resume completes it.
"$bin" "${args[@]}" --output "$tmp/s7-term" > "$tmp/term.log" 2>&1 &
pid=$!
count_term() { [[ -f $tmp/s7-term.merge-work/complete ]] && tr -d '\000' < "$tmp/s7-term.merge-work/complete" | wc -c || echo 0; }
for _ in $(seq 1 1200); do
  (($(count_term) >= 2)) && break
  sleep 0.02
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
((rc != 0)) || fail "a merge stopped by SIGTERM exited 0"
grep -q "interrupted by SIGTERM after [0-9]* of 12 tensors; resume with --resume" "$tmp/term.log" || { cat "$tmp/term.log"; fail "no SIGTERM line"; }
"$bin" "${args[@]}" --output "$tmp/s7-term" --resume > "$tmp/term2.log" 2>&1 || { cat "$tmp/term2.log"; fail "resume after SIGTERM"; }
cmp -s <(digest "$tmp/s7-whole") <(digest "$tmp/s7-term") || fail "merge resumed after SIGTERM differs"
ok "SIGTERM: $(grep -o 'after [0-9]* of 12' "$tmp/term.log"), --resume == uninterrupted merge"

# 5. refresh (--to loftq) on the bnb4 base: `loftq verify` against the merged weights W' (the same
#    merge --to bf16, 2 ranks above) shows the refreshed backbone + adapter as loaded below bnb4
#    re-quantization of W' on every matrix.
mpi 2 merge --base "$tmp/bnb4" --adapter "$tmp/ad" --output "$tmp/refresh" --to loftq --rank 8 --iters 3 \
  > "$tmp/refresh.log" 2>&1 || { cat "$tmp/refresh.log"; fail "merge --to loftq"; }
[[ -e $tmp/refresh.merged || -e $tmp/refresh.run.h5 ]] && fail "refresh left its intermediates"
"$bin" verify --model "$tmp/bnb4-np2" --output "$tmp/refresh" --json "$tmp/refresh.json" > "$tmp/verify.log" 2>&1 ||
  { cat "$tmp/verify.log"; fail "verify of the refreshed folder"; }
"$py" - "$tmp/refresh.json" <<'PY' || fail "refresh not below bnb4 re-quantization on every matrix"
import json, sys
r = json.load(open(sys.argv[1]))
ms = r["matrices"]
assert len(ms) == 35, len(ms)
worst = max(m["loftq_error"] / m["qlora_error"] for m in ms)
assert worst < 1.0, worst
t = r["totals"]
print(f"ok: refreshed error / bnb4 re-quantization error <= {worst:.3f} on all 35 matrices "
      f"(mean {t['mean_loftq_error']:.4f} vs {t['mean_qlora_error']:.4f})")
PY
ok "refresh (--to loftq) below bnb4 re-quantization of the merged weights on every matrix"

# 4. refused inputs: one line, exit != 0, nothing created
refused() {  # refused WHAT EXPECTED-TEXT loftq-args...
  local what=$1 expect=$2
  shift 2
  rm -rf "$tmp/bad" "$tmp/bad.merge-work"
  local rc=0
  "$bin" "$@" > "$tmp/bad.log" 2>&1 || rc=$?
  ((rc != 0)) || fail "$what: accepted"
  grep -q -- "$expect" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "$what: message lacks '$expect'"; }
  (($(grep -c . "$tmp/bad.log") == 1)) || { cat "$tmp/bad.log"; fail "$what: more than one line"; }
  [[ -e $tmp/bad || -e $tmp/bad.merge-work ]] && fail "$what: left $tmp/bad"
  true
}
variant() {  # variant NAME PYTHON-EDIT: a copy of the adapter with its config edited
  rm -rf "${tmp:?}/$1" && cp -r "$tmp/ad" "$tmp/$1"
  "$py" -c "import json,sys; p='$tmp/$1/adapter_config.json'; c=json.load(open(p)); $2; json.dump(c,open(p,'w'))"
}
m=(merge --base "$tmp/bf16" --output "$tmp/bad")
variant dora 'c["use_dora"]=True'
refused "DoRA" "use_dora = true is a LoRA variant" "${m[@]}" --adapter "$tmp/dora"
variant rank 'c["rank_pattern"]={"q_proj": 4}'
variant ia3 'c["peft_type"]="IA3"'
refused "IA3" 'peft_type is "IA3"; only LORA adapters can be merged' "${m[@]}" --adapter "$tmp/ia3"
variant saved 'c["modules_to_save"]=["lm_head"]'
refused "modules_to_save" "modules_to_save = \[\"lm_head\"\] is a LoRA variant" "${m[@]}" --adapter "$tmp/saved"
variant fifo 'c["fan_in_fan_out"]=True'
refused "fan_in_fan_out" "fan_in_fan_out = true" "${m[@]}" --adapter "$tmp/fifo"
variant badr 'c["r"]="8"'
refused "r as text" '"r" is missing or not a positive integer' "${m[@]}" --adapter "$tmp/badr"
refused "wrong rank" "adapter_config.json gives it r = 4" "${m[@]}" --adapter "$tmp/rank"
make_adapter --base "$tmp/bf16" --modules q_proj,v_proj --output "$tmp/qv"
"$py" -c "import json; p='$tmp/qv/adapter_config.json'; c=json.load(open(p)); c['target_modules']=['q_proj','k_proj','v_proj']; json.dump(c,open(p,'w'))"
refused "missing module" "no lora_A / lora_B for module model.layers.0.self_attn.k_proj" "${m[@]}" --adapter "$tmp/qv"
tensors_variant() {  # tensors_variant NAME PYTHON-EDIT-OF-t: a copy of the adapter with its tensors edited
  rm -rf "${tmp:?}/$1" && cp -r "$tmp/ad" "$tmp/$1"
  "$py" - "$src/tests/tools" "$tmp/$1/adapter_model.safetensors" "$2" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from make_adapter import read_tensors, write_safetensors
t = read_tensors(sys.argv[2])
exec(sys.argv[3])
write_safetensors(sys.argv[2], t, "F32")
PY
}
tensors_variant noB 'del t["base_model.model.model.layers.2.mlp.up_proj.lora_B.weight"]'
refused "lora_A without lora_B" "module model.layers.2.mlp.up_proj has lora_A but no lora_B" "${m[@]}" --adapter "$tmp/noB"
tensors_variant dorakey 't["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = t["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"][0]'
refused "DoRA magnitude tensor" "lora_magnitude_vector is not a LoRA lora_A / lora_B weight" "${m[@]}" --adapter "$tmp/dorakey"
refused "another model's adapter" "lora_A is \[16, 11008\], lora_B is \[4096, 16\]; the base weight is 64x172 so r = 16 needs" "${m[@]}" --adapter "$tmp/s7ad"
refused "--to" "option --to: 'fp32' is not one of bf16|fp16|bnb4|loftq" "${m[@]}" --adapter "$tmp/ad" --to fp32
refused "output in base" "option --output" merge --base "$tmp/bf16" --adapter "$tmp/ad" --output "$tmp/bf16/sub"
refused "bnb4 as nf4" "option --base-load" merge --base "$tmp/bnb4" --output "$tmp/bad" --adapter "$tmp/ad" --base-load nf4
ok "refused: DoRA (config and magnitude tensor), lora_A without lora_B, another model's adapter, IA3, modules_to_save, fan_in_fan_out, r as text, wrong rank, missing module, --to fp32, output inside the base, --base-load against a bnb4 folder"
echo "e2e_merge: passed"
