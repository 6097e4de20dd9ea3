#!/usr/bin/env bash
# The fault-injection campaign of issue #16: faults at random (seeded) moments, each run compared
# with an uninterrupted one. The seed is E2E_FAULT_SEED (default 16) and is printed; a failure
# says which round, signal and delay, so `E2E_FAULT_SEED=N` replays it.
#  1. `quantize` sent SIGKILL, SIGTERM or SIGINT after a random delay (anywhere from MPI start-up
#     through the plan, the run file's creation and the loop): SIGTERM / SIGINT end with one line
#     and exit 1 (or, landing before the handlers exist, by the signal with nothing written); no
#     temporary file is left; --resume (or a rerun) gives the datasets of the uninterrupted run.
#  2. `run` (quantize + export) likewise, the export phase included, and `export` alone: no
#     output folder and no temporary folder after a stop; `quantize --resume` + `export` give the
#     uninterrupted output (every file but report.json, whose timings differ, byte for byte).
#  3. A rank killed (SIGKILL) under mpirun -np 2 mid-run ends the job; --resume at -np 2 gives the
#     uninterrupted datasets.
#  4. Damaged run files: a bit flipped in a random deterministic dataset of a random matrix, and a
#     complete flag forged over a matrix never written: export refuses with one line naming the
#     run file and the matrix; --resume redoes that matrix; the export then equals the
#     uninterrupted one. A bit flipped in timings (not a result) changes nothing exported.
# A full disk is tests/e2e_diskfull.sh; frozen ranks are tests/e2e_reliability.sh.
set -euo pipefail
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# Job control: each background job in its own process group, and SIGINT not ignored in it (a
# non-interactive shell starts background commands with SIGINT ignored).
set -m
seed=${E2E_FAULT_SEED:-16}
RANDOM=$seed
echo "e2e_faults: seed $seed"
# r = 32, T = 30: the loop takes about two thirds of a run, start-up and plan the rest.
qargs=(--model "$model" --rank 32 --iters 30)

# What every faulty run is compared with.
t0=$(date +%s%N)
"$bin" quantize "${qargs[@]}" --work "$tmp/ref.h5" >/dev/null
quantize_ms=$((($(date +%s%N) - t0) / 1000000))
digest "$tmp/ref.h5" >"$tmp/ref.sha"
t0=$(date +%s%N)
"$bin" export --model "$model" --work "$tmp/ref.h5" --output "$tmp/ref_out" >/dev/null
export_ms=$((($(date +%s%N) - t0) / 1000000))
folder_digest "$tmp/ref_out" >"$tmp/ref_out.sha"
t0=$(date +%s%N)
"$bin" inspect "$model" >/dev/null
startup_ms=$((($(date +%s%N) - t0) / 1000000))  # MPI start-up and a header: before any handler
echo "e2e_faults: uninterrupted quantize ${quantize_ms} ms, export ${export_ms} ms, start-up ${startup_ms} ms"

signals=(KILL TERM INT)
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
entries() { find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' '; }
# only_files DIR NAME...: DIR holds exactly these entries (hidden ones included).
only_files() {
  local dir=$1
  shift
  [[ "$(entries "$dir")" == "$(printf '%s\n' "$@" | sort | tr '\n' ' ')" ]]
}
# stopped_cleanly WHAT SIG CODE LOG: the outcome of a job sent SIG. Prints "finished" (it
# finished first, exit 0), "early" (SIGTERM/SIGINT before the handlers: killed by it, nothing
# said) or "stopped"; fails on anything else (on stderr: stdout is the outcome).
stopped_cleanly() {
  local what=$1 sig=$2 code=$3 log=$4 num
  fail() { cat "$log" >&2; echo "FAIL: $*" >&2; exit 1; }
  num=$(kill -l "$sig")
  if ((code == 0)); then echo finished; return; fi
  if [[ $sig == KILL ]]; then
    ((code == 128 + num)) || fail "$what: SIGKILL, exit $code"
    echo stopped
    return
  fi
  if ((code == 128 + num)) && [[ ! -s $log ]]; then echo early; return; fi
  ((code == 1)) || fail "$what: SIG$sig, exit $code (expected 1)"
  [[ $(grep -c "loftq: error" "$log") -eq 1 ]] || fail "$what: SIG$sig, not one error line"
  grep -q "loftq: error: interrupted by SIG$sig" "$log" || fail "$what: SIG$sig, no 'interrupted by' line"
  echo stopped
}

# interrupt ROUND-DIR DELAY-MS KIND COMMAND...: runs COMMAND (output to ROUND-DIR/log), sends a
# random signal after a random delay up to DELAY-MS (mostly after start-up), checks the outcome (stopped_cleanly) and
# that a stopped job left only its log and run file; sets sig, delay, code, outcome and what.
interrupt() {
  local d=$1 span=$2 kind=$3 pid
  shift 3
  sig=${signals[RANDOM % 3]}
  # One signal in four during start-up, the others after it (plan, creation, loop, export).
  if ((RANDOM % 4 == 0 || span <= startup_ms)); then
    delay=$((RANDOM % span))
  else
    delay=$((startup_ms + RANDOM % (span - startup_ms)))
  fi
  what="$kind (SIG$sig after $delay ms)"
  mkdir -p "$d"
  "$@" >"$d/log" 2>&1 &
  pid=$!
  sleep_ms "$delay"
  kill "-$sig" "$pid" 2>/dev/null || true
  set +e
  wait "$pid"
  code=$?
  set -e
  outcome=$(stopped_cleanly "$what" "$sig" "$code" "$d/log")
  local keep=(log)
  [[ -e $d/run.h5 ]] && keep+=(run.h5)
  if [[ $outcome == early ]]; then
    only_files "$d" log || fail "$what: stopped before the handlers but left $(entries "$d")"
  elif [[ $sig != KILL && $outcome == stopped ]]; then
    only_files "$d" "${keep[@]}" || fail "$what: left $(entries "$d")"
  fi
}
# complete ROUND-DIR: quantize into its run file again (--resume when there is one).
complete() {
  local d=$1 resume=()
  [[ -e $d/run.h5 ]] && resume=(--resume)
  "$bin" quantize "${qargs[@]}" --work "$d/run.h5" "${resume[@]}" >"$d/resume.log" 2>&1 ||
    { cat "$d/resume.log"; fail "$what: the quantize after the stop failed"; }
}

# 1. quantize
for round in 1 2 3 4 5 6; do
  d=$tmp/q$round
  interrupt "$d" "$quantize_ms" "quantize round $round" "$bin" quantize "${qargs[@]}" --work "$d/run.h5"
  [[ $outcome == finished ]] || complete "$d"
  only_files "$d" log resume.log run.h5 || only_files "$d" log run.h5 || fail "$what: after completion the folder holds $(entries "$d")"
  digest "$d/run.h5" | cmp -s - "$tmp/ref.sha" || fail "$what: the completed run file differs from the uninterrupted one"
  ok "$what: $outcome, exit $code; completed == uninterrupted"
done

# 2. run (quantize + export)
for round in 1 2 3 4; do
  d=$tmp/r$round
  interrupt "$d" $((quantize_ms + export_ms)) "run round $round" "$bin" run "${qargs[@]}" --work "$d/run.h5" --output "$d/out"
  # SIGKILL may land after the output's commit (a rename): then it must be whole.
  [[ $outcome == finished || $sig == KILL || ! -e $d/out ]] || fail "$what: stopped, yet the output folder exists"
  if [[ $outcome != finished && ! -e $d/out ]]; then
    complete "$d"
    "$bin" export --model "$model" --work "$d/run.h5" --output "$d/out" >"$d/export.log" 2>&1 ||
      { cat "$d/export.log"; fail "$what: export after the stop failed"; }
  fi
  for e in $(entries "$d"); do
    [[ $e =~ ^(log|resume.log|export.log|run.h5|out)$ ]] || fail "$what: left $e"
  done
  folder_digest "$d/out" | cmp -s - "$tmp/ref_out.sha" || fail "$what: the output differs from the uninterrupted one"
  ok "$what: $outcome, exit $code; output == uninterrupted"
done

# 2b. export alone, from the uninterrupted run file: no output and no temporary after a stop;
#     exporting again gives the uninterrupted output.
for round in 1 2 3; do
  d=$tmp/e$round
  interrupt "$d" "$export_ms" "export round $round" "$bin" export --model "$model" --work "$tmp/ref.h5" --output "$d/out"
  [[ $outcome == finished || $sig == KILL || ! -e $d/out ]] || fail "$what: stopped, yet the output folder exists"
  if [[ $outcome != finished && ! -e $d/out ]]; then
    "$bin" export --model "$model" --work "$tmp/ref.h5" --output "$d/out" >"$d/export.log" 2>&1 ||
      { cat "$d/export.log"; fail "$what: export after the stop failed"; }
  fi
  only_files "$d" log export.log out || only_files "$d" log out || fail "$what: left $(entries "$d")"
  folder_digest "$d/out" | cmp -s - "$tmp/ref_out.sha" || fail "$what: the output differs from the uninterrupted one"
  ok "$what: $outcome, exit $code; output == uninterrupted"
done

# 3. A rank killed under mpirun -np 2.
victim=$((RANDOM % 2))
LOFTQ_BINARY=$bin bash "$src/launch/mpirun.sh" -np 2 quantize "${qargs[@]}" --work "$tmp/mpi.h5" >"$tmp/mpi.log" 2>&1 &
job=$!  # mpirun.sh execs mpirun; the ranks are its children
rank_pid=""
for _ in $(seq 1 1000); do
  for p in $(pgrep -P "$job" || true); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim" && rank_pid=$p
  done
  [[ -n $rank_pid && -e $tmp/mpi.h5 ]] && break
  sleep 0.01
done
[[ -n $rank_pid ]] || fail "mpirun -np 2: rank $victim's process not found"
sleep_ms $((RANDOM % 250))  # the loop of -np 2 takes about 600 ms
kill -KILL "$rank_pid"
( sleep 60; touch "$tmp/mpi.hung"; kill -KILL -- "-$job" 2>/dev/null ) &
guard=$!
set +e
wait "$job"
code=$?
set -e
kill -- "-$guard" 2>/dev/null || true  # its sleep too (it holds the output pipe)
read -r done_count total < <("$py" "$src/tests/runfile_complete.py" "$tmp/mpi.h5")
[[ ! -e $tmp/mpi.hung ]] || { cat "$tmp/mpi.log"; fail "killed rank $victim: the job hung (killed after 60 s)"; }
((code != 0)) || { cat "$tmp/mpi.log"; fail "killed rank $victim: exit 0"; }
mpi 2 quantize "${qargs[@]}" --work "$tmp/mpi.h5" --resume >"$tmp/mpi-resume.log" 2>&1 ||
  { cat "$tmp/mpi-resume.log"; fail "--resume after a killed rank"; }
digest "$tmp/mpi.h5" | cmp -s - "$tmp/ref.sha" || fail "killed rank $victim + --resume differs from the uninterrupted run"
((done_count < total)) || fail "killed rank $victim: the job had finished ($done_count/$total) before the kill"
ok "rank $victim killed at $done_count/$total under mpirun -np 2: job ended (exit $code); --resume == uninterrupted"

# 4. Damaged run files.
# damage FILE KIND SEED: prints the matrix it damaged.
damage() {
  "$py" - "$@" <<'PY'
import random, sys, h5py, numpy as np
path, kind, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
with h5py.File(path, "r+") as f:
    name = rng.choice(sorted(f["matrices"].keys()))
    g = f["matrices"][name]
    if kind == "forged":  # written never (fill never: zeros), flagged complete
        for ds in g.keys():
            if g[ds].shape == ():
                g[ds][()] = np.zeros((), g[ds].dtype)
            else:
                g[ds][...] = np.zeros(g[ds].shape, g[ds].dtype)
    else:
        ds = "timings" if kind == "timings" else rng.choice(
            [d for d in ("codes", "absmax", "A", "B", "qlora_error", "iteration_error", "chosen_iteration",
                         "loaded_error", "fingerprint", "checksum") if d in g])
        raw = bytearray(g[ds][()].tobytes())
        i = rng.randrange(len(raw) * 8)
        raw[i // 8] ^= 1 << (i % 8)
        v = np.frombuffer(bytes(raw), g[ds].dtype).reshape(g[ds].shape)
        g[ds][...] = v
    print(name)
PY
}
for kind in flip flip forged timings; do
  d=$tmp/damage-$kind-$RANDOM
  mkdir -p "$d"
  cp "$tmp/ref.h5" "$d/run.h5"
  matrix=$(damage "$d/run.h5" "$kind" "$RANDOM")
  what="damaged run file ($kind in $matrix)"
  rc=0
  "$bin" export --model "$model" --work "$d/run.h5" --output "$d/out" >"$d/export.log" 2>&1 || rc=$?
  if [[ $kind == timings ]]; then
    ((rc == 0)) || { cat "$d/export.log"; fail "$what: export refused a change outside the results"; }
  else
    ((rc != 0)) || fail "$what: exported with exit 0"
    if [[ $(grep -c "loftq: error" "$d/export.log") -ne 1 ]] || ! grep -q "loftq: error: run file $d/run.h5.*$matrix" "$d/export.log"; then
      cat "$d/export.log"
      fail "$what: not one line naming the run file and the matrix"
    fi
    only_files "$d" run.h5 export.log || fail "$what: the refused export left $(entries "$d")"
    "$bin" quantize "${qargs[@]}" --work "$d/run.h5" --resume >"$d/resume.log" 2>&1 ||
      { cat "$d/resume.log"; fail "$what: --resume failed"; }
    grep -q "matrix $matrix fails its checksum; redoing it" "$d/resume.log" ||
      { cat "$d/resume.log"; fail "$what: --resume did not redo the matrix"; }
    digest "$d/run.h5" | cmp -s - "$tmp/ref.sha" || fail "$what: --resume differs from the uninterrupted run"
    "$bin" export --model "$model" --work "$d/run.h5" --output "$d/out" >"$d/export.log" 2>&1 ||
      { cat "$d/export.log"; fail "$what: export after --resume failed"; }
  fi
  folder_digest "$d/out" | cmp -s - "$tmp/ref_out.sha" || fail "$what: the output differs from the uninterrupted one"
  ok "$what: $([[ $kind == timings ]] && echo "exported as before" || echo "refused in one line (exit $rc); --resume redid it; output == uninterrupted")"
done
echo "e2e_faults: all passed (seed $seed)"
