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
# shellcheck disable=SC2034  # read by e2e_common.sh's mpi
E2E_MPI_TIMEOUT=120
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
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

# 2. Extreme weights: a refusal naming the tensor, never NaN or a false 0 in a run file.
# edit_weights FOLDER MODE: one F32 target with a 3.3e38 outlier (huge) or all subnormal (subnormal).
edit_weights() {
  cp -r "$model" "$1"
  "$py" - "$1/model.safetensors" "$2" <<'PY'
import json, struct, sys
import numpy as np
path, mode = sys.argv[1], sys.argv[2]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
meta = json.loads(data[8:8 + n])["model.layers.3.mlp.up_proj.weight"]
assert meta["dtype"] == "F32"
a, b = (8 + n + o for o in meta["data_offsets"])
w = np.frombuffer(bytes(data[a:b]), dtype=np.float32).copy()
if mode == "huge":
    w[77] = np.float32(3.3e38)
else:
    w = (w / np.abs(w).max() * 1e-42).astype(np.float32)
data[a:b] = w.tobytes()
open(path, "wb").write(bytes(data))
PY
}
edit_weights "$tmp/huge" huge
edit_weights "$tmp/subnormal" subnormal
for m in huge subnormal; do
  for extra in "" --no-keep-best; do
    set +e
    # shellcheck disable=SC2086  # $extra: no option, or one
    mpi 2 quantize --model "$tmp/$m" --work "$tmp/$m.h5" --rank 8 --iters 2 $extra > "$tmp/$m.log" 2>&1
    c=$?
    set -e
    (( c != 0 && c != 124 )) || { cat "$tmp/$m.log"; fail "$m weights $extra: exit $c"; }
    grep -q "loftq: error: tensor model.layers.3.mlp.up_proj.weight: .*Frobenius norm" "$tmp/$m.log" \
      || { cat "$tmp/$m.log"; fail "$m weights $extra: no refusal naming the tensor"; }
    rm -f "$tmp/$m.h5"
  done
done
ok "a 3.3e38 outlier and subnormal weights are refused naming the tensor (with and without --no-keep-best)"

# 3. Stop signals: one line, non-zero exit, and a run file that --resume completes to the same
#    bytes as an uninterrupted run.
"$bin" synth --preset tiny --layers 12 --output "$tmp/tiny12" > /dev/null
args=(quantize --model "$tmp/tiny12" --rank 16 --iters 5 --split-threshold 100KB)
mpi 2 "${args[@]}" --work "$tmp/whole.h5" > "$tmp/whole.log" 2>&1 || { cat "$tmp/whole.log"; fail "uninterrupted run"; }
# stop_midway NP SIGNAL NAME [TO]: start the job, send SIGNAL once some matrices are complete, to
# the process (one rank), to mpirun (TO=mpirun: Open MPI forwards SIGUSR1 to every rank; on
# SIGTERM it kills them itself after a short grace), or to every rank as srun / scancel do.
stop_midway() {
  local np=$1 sig=$2 name=$3 to=${4:-ranks} job code done_count total p
  rm -f "$tmp/stop.h5"
  if (( np == 1 )); then
    # One BLAS thread, as launch/mpirun.sh runs each rank: the bits depend on the thread count.
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin" "${args[@]}" --work "$tmp/stop.h5" > "$tmp/stop.log" 2>&1 &
  else
    # mpirun.sh execs mpirun, which forwards the signal to every rank.
    LOFTQ_BINARY=$bin bash "$src/launch/mpirun.sh" -np "$np" "${args[@]}" --work "$tmp/stop.h5" > "$tmp/stop.log" 2>&1 &
  fi
  job=$!
  done_count=0
  for _ in $(seq 1 600); do
    read -r done_count total < <("$py" "$src/tests/runfile_complete.py" "$tmp/stop.h5" 2>/dev/null || echo 0 0)
    (( done_count >= 4 )) && break
    sleep 0.05
  done
  if (( np == 1 )) || [[ $to == mpirun ]]; then
    kill "-$sig" "$job"
  else
    for p in $(pgrep -P "$job"); do kill "-$sig" "$p"; done
  fi
  set +e
  wait "$job"
  code=$?
  set -e
  (( code != 0 && code < 124 )) || { cat "$tmp/stop.log"; fail "SIG$sig at -np $np: exit $code (by the signal or hung)"; }
  [[ $(grep -c "loftq: error" "$tmp/stop.log") -eq 1 ]] || { cat "$tmp/stop.log"; fail "SIG$sig at -np $np: not one line"; }
  grep -Eq "loftq: error: interrupted by $name after [0-9]+ of 84 matrices; resume with --resume" "$tmp/stop.log" \
    || { cat "$tmp/stop.log"; fail "SIG$sig at -np $np: no 'interrupted by $name' line"; }
  read -r done_count total < <("$py" "$src/tests/runfile_complete.py" "$tmp/stop.h5")
  (( done_count < total )) || fail "SIG$sig at -np $np: the job had finished before the signal"
  mpi 2 "${args[@]}" --work "$tmp/stop.h5" --resume > "$tmp/resume.log" 2>&1 || { cat "$tmp/resume.log"; fail "resume after SIG$sig"; }
  digest "$tmp/whole.h5" > "$tmp/whole.sha"
  digest "$tmp/stop.h5" | cmp -s - "$tmp/whole.sha" || fail "SIG$sig at -np $np + --resume differs from an uninterrupted run"
  ok "SIG$sig at -np $np stopped at $done_count/$total: one line, exit $code, --resume == uninterrupted"
}
stop_midway 1 TERM SIGTERM
stop_midway 1 INT SIGINT
stop_midway 1 USR1 SIGUSR1
stop_midway 2 TERM SIGTERM
stop_midway 2 USR1 SIGUSR1 mpirun

# 4. The watchdog: a frozen rank (SIGSTOP), rank 0 included, ends the job with one line naming
#    it; ranks that only wait for others (3 ranks, split matrices) do not trip it.
mpi 3 "${args[@]}" --work "$tmp/wd-ok.h5" --watchdog 2 > "$tmp/wd-ok.log" 2>&1 || { cat "$tmp/wd-ok.log"; fail "--watchdog 2 tripped on a healthy job"; }
# Whole matrices only: rank 0 is then the judge of the others (in a split matrix each member
# names the matrix and its group instead), and the others judge rank 0 by its heartbeats.
# freeze_rank RANK PATTERN: SIGSTOP that rank mid-run; the job must end with one line matching PATTERN.
freeze_rank() {
  local victim=$1 pattern=$2 job pid frozen="" guard code
  rm -f "$tmp/wd.h5"
  LOFTQ_BINARY=$bin bash "$src/launch/mpirun.sh" -np 2 quantize --model "$tmp/tiny12" --rank 16 --iters 5 \
    --work "$tmp/wd.h5" --watchdog 2 > "$tmp/wd.log" 2>&1 &
  job=$!
  for _ in $(seq 1 600); do
    read -r done_count total < <("$py" "$src/tests/runfile_complete.py" "$tmp/wd.h5" 2>/dev/null || echo 0 0)
    (( done_count >= 4 )) && break
    sleep 0.05
  done
  for pid in $(pgrep -P "$job"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim"; then frozen=$pid; fi
  done
  [[ -n "$frozen" ]] || fail "watchdog: rank $victim's process not found"
  kill -STOP "$frozen"
  ( sleep 60; kill -KILL "$job" 2>/dev/null ) >/dev/null 2>&1 &  # its sleep must not hold the output open
  guard=$!
  set +e
  wait "$job"
  code=$?
  set -e
  kill "$guard" 2>/dev/null || true
  kill -KILL "$frozen" 2>/dev/null || true
  (( code != 0 && code != 137 )) || { cat "$tmp/wd.log"; fail "frozen rank $victim: exit $code (137 = hung, killed after 60 s)"; }
  [[ $(grep -c "loftq: error" "$tmp/wd.log") -eq 1 ]] || { cat "$tmp/wd.log"; fail "frozen rank $victim: not one error line"; }
  grep -q "loftq: error: watchdog: $pattern" "$tmp/wd.log" \
    || { cat "$tmp/wd.log"; fail "frozen rank $victim: the line does not name it"; }
}
freeze_rank 1 "rank 0 made no progress for [0-9]* s (waiting for rank 1, "
freeze_rank 0 "rank 1 made no progress for [0-9]* s (waiting for rank 0, which has sent no heartbeat"
ok "a frozen rank (1, and rank 0 itself) ends the job under --watchdog 2 naming it; a healthy job under --watchdog 2 completes"

echo "e2e_reliability: all passed"
