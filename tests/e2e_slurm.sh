#!/usr/bin/env bash
# End-to-end on a real one-node Slurm (launch/slurm-local.sh; needs root and the Slurm packages
# launch/setup.sh installs): slurm/loftq.sbatch submitted with `sbatch --wait` on 2 CPU ranks.
#   1. probe: the real loftq under `srun --mpi=pmix` on 2 ranks prints its help once (PMIx
#      gave both ranks one MPI world; without it each would be a rank 0 and print it).
#   2. the script's checks: each bad setting is one line naming it, exit 2, before any step.
#   3. an uninterrupted quantize -> export -> verify; the output is verified again here.
#   4. cancel and resubmit: scancel during quantize, resubmit the same job: it resumes from the
#      run file and its output is byte-identical to the uninterrupted run's.
#   5. time limit: USR1 to the batch script during quantize (what --signal=B:USR1@300 sends):
#      the step stops, the job requeues itself, resumes, and its output is identical too.
#   6. slurm/llama2-70b.sbatch, codellama-70b.sbatch and the scaling-study array, scaled down.
#   7. GPU binding from the local rank (with a stand-in that reports CUDA_VISIBLE_DEVICES).
# The jobs run side by side (the node declares 8 CPUs; the ranks mostly wait) to keep it short.
# Slurm is stopped in a trap, always, and only the daemons this test started.
set -euo pipefail
src=${LOFTQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
binary=${LOFTQ_BINARY:-$src/build/loftq}
# The loftq that runs the quantize/export/verify steps: the real one.
job_binary=$binary
# A synthetic Llama (tiny preset, 12 layers, 84 matrices) whose quantize step lasts long enough
# on 2 ranks to be interrupted mid-way (made below unless LOFTQ_TEST_SLURM_MODEL names one).
model=${LOFTQ_TEST_SLURM_MODEL:-}
# Cases 4 and 5 interrupt the quantize step once its run file holds this many complete matrices
# (of 84): mid-way whatever the machine's load. The test fails (it does not pass silently) when
# quantize was already complete.
interrupt_at=${LOFTQ_TEST_INTERRUPT_AT:-4}

fail() { echo "e2e_slurm: FAIL: $*" >&2; exit 1; }
[[ -x "$binary" ]] || fail "$binary not built"
tmp=$(mktemp -d /tmp/loftq-e2e-slurm.XXXXXX)
slurm_dir=""
declare -A waiter=()
cleanup() {
  local rc=$? f p
  # Our `sbatch --wait` clients would wait forever once Slurm is gone (and hold ctest's pipe).
  for p in "${waiter[@]}"; do kill "$p" 2>/dev/null || true; done
  if ((rc != 0)); then
    for f in "$tmp"/*.out; do
      if [[ -f "$f" ]]; then echo "--- $f"; tail -n 30 "$f"; fi
    done
    if [[ -n "$slurm_dir" ]]; then tail -n 20 "$slurm_dir/log/slurmctld.log" 2>/dev/null || true; fi
  fi
  if [[ -n "$slurm_dir" ]]; then bash "$src/launch/slurm-local.sh" stop "$slurm_dir"; fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
t0=$SECONDS
if [[ -z "$model" ]]; then
  model=$tmp/tiny12
  "$binary" synth --preset tiny --layers 12 --output "$model" >/dev/null
fi
eval "$(LOFTQ_SLURM_CPUS=8 bash "$src/launch/slurm-local.sh" start)"
slurm_dir=$LOFTQ_SLURM_LOCAL
echo "e2e_slurm: Slurm up in $((SECONDS - t0)) s ($slurm_dir)"

has() { grep -qE -- "$2" "$1" || fail "$1 lacks '$2'"; }
lacks() { ! grep -qE -- "$2" "$1" || fail "$1 has '$2'"; }
job_env=(LOFTQ_MODEL="$model" LOFTQ_BINARY="$job_binary" LOFTQ_DEVICE=cpu LOFTQ_RANK=16 LOFTQ_ITERS=5)
# start NAME [VAR=value...] [-- sbatch options and script]: `sbatch --wait` in the background
# (default: 2 ranks of slurm/loftq.sbatch), log in $tmp/NAME.out, job id in $tmp/NAME.id.
start() {
  local name=$1 vars=()
  local rest=(-n 2 -o "$tmp/$name.out" "$src/slurm/loftq.sbatch")
  shift
  while (($#)); do
    if [[ "$1" == -- ]]; then shift; rest=("$@"); break; fi
    vars+=("$1"); shift
  done
  (cd "$src" && exec env "${job_env[@]}" "${vars[@]}" sbatch --wait --parsable "${rest[@]}") >"$tmp/$name.id" &
  waiter[$name]=$!
}
# finish NAME: wait for the job started as NAME; fails unless it exited 0.
finish() {
  local rc=0
  wait "${waiter[$1]}" || rc=$?
  [[ "$rc" == 0 ]] || fail "job $1 exited $rc"
}
# Wait until log $1 shows the quantize step running and its run file $2 holds $interrupt_at
# complete matrices.
wait_quantize() {
  local i done_count
  for ((i = 0; i < 600; i++)); do
    if grep -q "step quantize at" "$1" 2>/dev/null; then break; fi
    sleep 0.1
  done
  ((i < 600)) || fail "$1: quantize did not start in 60 s"
  for ((i = 0; i < 1200; i++)); do
    read -r done_count _ < <(/usr/bin/python3 "$src/tests/runfile_complete.py" "$2")
    ((done_count >= interrupt_at)) && return 0
    sleep 0.05
  done
  fail "$2: fewer than $interrupt_at complete matrices after 60 s"
}
# The first quantize step in log $1 was stopped before it completed.
interrupted() {
  local first
  first=$(grep -m 1 "step quantize ended" "$1") || fail "$1: no quantize step ended"
  [[ "$first" != *"status 0" ]] || fail "$1: quantize completed before the interruption (LOFTQ_TEST_INTERRUPT_AT=$interrupt_at)"
}

start probe LOFTQ_BINARY="$binary" LOFTQ_STEPS=probe
start ref LOFTQ_OUTPUT="$tmp/ref"
start requeue LOFTQ_OUTPUT="$tmp/requeue"
id=$(env "${job_env[@]}" LOFTQ_OUTPUT="$tmp/cancel" sbatch --parsable -n 2 -o "$tmp/cancel-1.out" "$src/slurm/loftq.sbatch")

# 2. Checks before any work: run the script as a batch step would, with a bad setting each.
check_rejects() {  # MESSAGE VAR=value...
  local message=$1 rc=0 log="$tmp/check.out"
  shift
  env SLURM_JOB_ID=0 SLURM_NTASKS=2 "${job_env[@]}" LOFTQ_OUTPUT="$tmp/out-check" "$@" \
    bash "$src/slurm/loftq.sbatch" >"$log" 2>&1 || rc=$?
  [[ "$rc" == 2 ]] || fail "with $* the script exited $rc, not 2: $(cat "$log")"
  has "$log" "$message"
  lacks "$log" "^loftq.sbatch: step "
}
mkdir -p "$tmp/out-exists" && touch "$tmp/out-exists/config.json"
check_rejects "not inside a Slurm allocation" SLURM_JOB_ID=
check_rejects "LOFTQ_MODEL=$tmp/none is not a folder" LOFTQ_MODEL="$tmp/none"
check_rejects "LOFTQ_MODEL=$tmp has no readable config.json" LOFTQ_MODEL="$tmp"
check_rejects "LOFTQ_OUTPUT=$tmp/out-exists exists and there is no run file" LOFTQ_OUTPUT="$tmp/out-exists"
check_rejects "LOFTQ_WORK=$tmp/no/out.run.h5: folder $tmp/no does not exist" LOFTQ_OUTPUT="$tmp/no/out"
check_rejects "LOFTQ_OUTPUT=$tmp/no/out: folder $tmp/no does not exist" LOFTQ_OUTPUT="$tmp/no/out" LOFTQ_WORK="$tmp/w.h5"
check_rejects "LOFTQ_BACKBONE=int3: expected" LOFTQ_BACKBONE=int3
check_rejects "LOFTQ_OUTPUT is not set" LOFTQ_OUTPUT= LOFTQ_STEPS=quantize
check_rejects "LOFTQ_STEPS: unknown step 'train'" LOFTQ_STEPS="quantize train"
if ! nvidia-smi -L >/dev/null 2>&1; then
  check_rejects "LOFTQ_DEVICE=cuda but no GPU is visible" LOFTQ_DEVICE=cuda CUDA_VISIBLE_DEVICES=
fi
check_rejects "LOFTQ_BINARY=$tmp/none is not an executable" LOFTQ_BINARY="$tmp/none"
check_rejects "LOFTQ_NTASKS=3 exceeds the allocation's 2 tasks" LOFTQ_NTASKS=3
echo "e2e_slurm: checks ok ($((SECONDS - t0)) s)"

# 4. Cancel during quantize, resubmit.
wait_quantize "$tmp/cancel-1.out" "$tmp/cancel.run.h5"
scancel "$id"
# 5. Time limit near: USR1 to the batch script; the job requeues itself and resumes.
wait_quantize "$tmp/requeue.out" "$tmp/requeue.run.h5"
scancel --batch --signal=USR1 "$(<"$tmp/requeue.id")"
for ((i = 0; i < 300; i++)); do
  [[ -z "$(squeue -h -j "$id" -t PD,R,CG,CF,S 2>/dev/null)" ]] && break
  sleep 0.1
done
interrupted "$tmp/cancel-1.out"
[[ ! -e "$tmp/cancel" ]] || fail "the cancelled job exported"
[[ -e "$tmp/cancel.run.h5" ]] || fail "the cancelled job left no run file"
start cancel-2 LOFTQ_OUTPUT="$tmp/cancel"

# 6. The model scripts and the scaling-study array, scaled down to 2 CPU ranks on this node;
# submitted by a relative path as users do (the scripts find loftq.sbatch through the job).
small=(--nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1)
for m in llama2-70b codellama-70b; do
  start "$m" LOFTQ_BINARY="$binary" LOFTQ_STEPS=probe -- "${small[@]}" -o "$tmp/$m.out" "slurm/$m.sbatch"
done
start study LOFTQ_BINARY="$binary" LOFTQ_STEPS=probe LOFTQ_STUDY_RANKS="1 2" LOFTQ_STUDY_DIR="$tmp/study" \
  -- --array=0-1 "${small[@]}" -o "$tmp/study-%a.out" slurm/scaling-study.sbatch

# 7. GPU binding from the local rank: with GPUs 3,5 visible on the node, rank i sees only the
# i-th (a stand-in binary reports what it sees; no GPU is used).
# shellcheck disable=SC2016  # expanded by the stand-in, not here
printf '#!/usr/bin/env bash\necho "rank $SLURM_PROCID local $SLURM_LOCALID sees GPU $CUDA_VISIBLE_DEVICES"\n' >"$tmp/show-gpu"
chmod +x "$tmp/show-gpu"
start gpu-bind LOFTQ_BINARY="$tmp/show-gpu" LOFTQ_STEPS=probe LOFTQ_DEVICE=auto CUDA_VISIBLE_DEVICES=3,5

# 1. The real binary on 2 ranks under srun --mpi=pmix: one MPI world prints the help once.
finish probe
has "$tmp/probe.out" "ranks: 2 "
n=$(grep -c '^usage: loftq' "$tmp/probe.out") || true
[[ "$n" == 1 ]] || fail "probe: help printed $n times, not once: the 2 ranks were not one MPI world"
echo "e2e_slurm: probe ok ($((SECONDS - t0)) s)"

# 3. Uninterrupted; its output verified again here.
finish ref
has "$tmp/ref.out" "done: quantize export verify"
[[ -s "$tmp/ref.run.verify.json" ]] || fail "the job wrote no verify report"
"$job_binary" verify --model "$model" --output "$tmp/ref" --json "$tmp/ref.verify-again.json" ||
  fail "loftq verify rejects the job's output"
echo "e2e_slurm: uninterrupted run ok ($((SECONDS - t0)) s)"

for m in llama2-70b codellama-70b; do
  finish "$m"
  has "$tmp/$m.out" "ranks: 2 "
  has "$tmp/$m.out" "done: probe"
done
finish study
for r in 1 2; do
  has "$tmp/study/r$r/point.json" "\"ranks\": $r,"
  has "$tmp/study-$((r - 1)).out" "ranks: $r "
done
echo "e2e_slurm: model scripts and scaling-study array ok ($((SECONDS - t0)) s)"

finish gpu-bind
has "$tmp/gpu-bind.out" "GPUs visible per node: 2"
has "$tmp/gpu-bind.out" "^rank 0 local 0 sees GPU 3$"
has "$tmp/gpu-bind.out" "^rank 1 local 1 sees GPU 5$"
echo "e2e_slurm: GPU binding from the local rank ok ($((SECONDS - t0)) s)"

finish cancel-2
has "$tmp/cancel-2.out" "run file: $tmp/cancel.run.h5 \(exists: resuming\)"
has "$tmp/cancel-2.out" "quantize .* --resume"
diff -r -x report.json "$tmp/ref" "$tmp/cancel" >/dev/null || fail "output after cancel + resubmit differs from the uninterrupted run's"
echo "e2e_slurm: cancel + resubmit ok, output identical ($((SECONDS - t0)) s)"

finish requeue
has "$tmp/requeue.out" "time limit near \(USR1\)"
interrupted "$tmp/requeue.out"
has "$tmp/requeue.out" "requeued; the next start resumes"
has "$tmp/requeue.out" "restart 1,"
has "$tmp/requeue.out" "\(exists: resuming\)"
has "$tmp/requeue.out" "done: quantize export verify"
diff -r -x report.json "$tmp/ref" "$tmp/requeue" >/dev/null || fail "output after requeue differs from the uninterrupted run's"
echo "e2e_slurm: time-limit requeue ok, output identical ($((SECONDS - t0)) s)"
echo "e2e_slurm: PASS in $((SECONDS - t0)) s"
