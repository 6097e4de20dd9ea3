#!/usr/bin/env bash
# slurm/merge-70b.sbatch on a real one-node Slurm (launch/slurm-local.sh, as tests/e2e_slurm.sh),
# scaled down to 2 CPU ranks and a llama2-7b-shaped layer (synth) with a rank-16 adapter on all 7
# linears (tests/tools/make_adapter.py):
#   1. bad settings: one line naming them, exit 2, before any step;
#   2. an uninterrupted job: its output equals `loftq merge` run directly, byte for byte;
#   3. time limit near: USR1 to the batch script mid-merge: the ranks stop after their tensor, the
#      job requeues itself, resumes the work folder and its output is identical too.
set -euo pipefail
src=${LOFTQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
binary=${LOFTQ_BINARY:-$src/build/loftq}
fail() { echo "e2e_slurm_merge: FAIL: $*" >&2; exit 1; }
[[ -x "$binary" ]] || fail "$binary not built"
tmp=$(mktemp -d /tmp/loftq-e2e-slurm-merge.XXXXXX)
slurm_dir=""
waiters=()
cleanup() {
  local rc=$? f p
  for p in "${waiters[@]}"; do kill "$p" 2>/dev/null || true; done
  if ((rc != 0)); then
    for f in "$tmp"/*.out; do
      if [[ -f "$f" ]]; then echo "--- $f"; tail -n 30 "$f"; fi
    done
  fi
  if [[ -n "$slurm_dir" ]]; then bash "$src/launch/slurm-local.sh" stop "$slurm_dir"; fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
t0=$SECONDS
"$binary" synth --preset llama2-7b --layers 1 --output "$tmp/base" >/dev/null
/usr/bin/python3 "$src/tests/tools/make_adapter.py" --base "$tmp/base" --r 16 \
  --modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --output "$tmp/adapter"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$binary" merge --base "$tmp/base" \
  --adapter "$tmp/adapter" --output "$tmp/direct" --max-shard-size 300MB >/dev/null
eval "$(LOFTQ_SLURM_CPUS=8 bash "$src/launch/slurm-local.sh" start)"
slurm_dir=$LOFTQ_SLURM_LOCAL
echo "e2e_slurm_merge: Slurm up in $((SECONDS - t0)) s"
has() { grep -qE -- "$2" "$1" || fail "$1 lacks '$2'"; }
env_common=(LOFTQ_BASE="$tmp/base" LOFTQ_ADAPTER="$tmp/adapter" LOFTQ_BINARY="$binary"
            LOFTQ_EXTRA_ARGS="--max-shard-size 300MB")
small=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --mem-per-cpu=100M)
submit() {  # submit NAME: `sbatch --wait` in the background, log $tmp/NAME.out, id in $tmp/NAME.id
  (cd "$src" && exec env "${env_common[@]}" LOFTQ_OUTPUT="$tmp/$1" sbatch --wait --parsable "${small[@]}" \
    -o "$tmp/$1.out" slurm/merge-70b.sbatch) >"$tmp/$1.id" &
  waiters+=($!)
}
submit whole
submit requeue

# 1. checks
check_rejects() {  # MESSAGE VAR=value...
  local message=$1 rc=0
  shift
  env SLURM_JOB_ID=0 "${env_common[@]}" LOFTQ_OUTPUT="$tmp/out-check" "$@" \
    bash "$src/slurm/merge-70b.sbatch" >"$tmp/check.log" 2>&1 || rc=$?
  [[ "$rc" == 2 ]] || fail "with $* the script exited $rc, not 2: $(cat "$tmp/check.log")"
  has "$tmp/check.log" "$message"
}
check_rejects "not inside a Slurm allocation" SLURM_JOB_ID=
check_rejects "LOFTQ_BASE='$tmp/none' is not a model folder" LOFTQ_BASE="$tmp/none"
check_rejects "LOFTQ_ADAPTER='$tmp/base' has no adapter_config.json" LOFTQ_ADAPTER="$tmp/base"
check_rejects "LOFTQ_TO=int8: expected bf16, fp16, bnb4 or loftq" LOFTQ_TO=int8
check_rejects "LOFTQ_BINARY=$tmp/none is not an executable" LOFTQ_BINARY="$tmp/none"
echo "e2e_slurm_merge: checks ok"

# 3. USR1 once the requeue job's work folder holds 2 complete tensors (of 12)
for ((i = 0; i < 3000; i++)); do
  f=$tmp/requeue.merge-work/complete
  if [[ -f $f ]] && (($(tr -d '\000' <"$f" | wc -c) >= 2)); then break; fi
  sleep 0.02
done
((i < 3000)) || fail "the requeue job's merge did not start in 60 s"
scancel --batch --signal=USR1 "$(<"$tmp/requeue.id")"

for p in "${waiters[@]}"; do wait "$p" || fail "a job exited non-zero"; done
waiters=()
digest() { (cd "$1" && sha256sum config.json ./*.safetensors ./*.index.json); }
has "$tmp/whole.out" "merge ended with status 0"
cmp -s <(digest "$tmp/direct") <(digest "$tmp/whole") || fail "the job's output differs from loftq merge run directly"
echo "e2e_slurm_merge: uninterrupted job ok, output identical ($((SECONDS - t0)) s)"
has "$tmp/requeue.out" "interrupted by SIGUSR1 after [0-9]+ of 12 tensors"
has "$tmp/requeue.out" "requeueing; the next start resumes"
has "$tmp/requeue.out" "restart 1: .* --resume"
has "$tmp/requeue.out" "resuming .*merge-work: [0-9]+ of 12 tensors already complete"
cmp -s <(digest "$tmp/direct") <(digest "$tmp/requeue") || fail "the output after requeue differs"
echo "e2e_slurm_merge: time-limit requeue ok, output identical ($((SECONDS - t0)) s)"
echo "e2e_slurm_merge: PASS in $((SECONDS - t0)) s"
