#!/usr/bin/env bash
# Roofline of `loftq run` (issue #15): each phase's work (bytes moved, flops), its measured time,
# and this machine's limits measured in the same run, giving each phase's efficiency.
#
# For each shape (default 5504x2048, 4096x4096, 11008x4096, 28672x8192) it writes a one-matrix
# bf16 checkpoint (bench/one_matrix.py), runs `loftq run --rank 64 --iters 5 --log-json F` as a
# whole process (wall clock around it; output and run file removed before each repeat; the
# median-wall run's own phase times are used), reading from the record `times` (read, quantize,
# svd, comm, write, total), `gemm_passes` and `sketch`, and from its console the export time.
# Then it measures the limits (bench/roofline.py limits): memmove copy bandwidth of 512 MB
# (1 thread and 2 threads; bytes read + written) and cblas_sgemm GFLOP/s of the OpenBLAS the
# binary links (ldd) at the loop's exact GEMM shapes for each matrix shape, and applies the work
# model (WORK_MODEL in bench/roofline.py, also printed in roofline.md). Every timed command takes
# the timing lock /tmp/bench.lock.
#
# Writes $out/roofline.md (a table per shape), $out/roofline.json (raw: every record, wall,
# limit sample, and the derived table), $out/roofline.log (this console). Takes about 1.5 minutes
# here with all four shapes at 2 threads (trial: the 28672x8192 checkpoint 25 s, its run 10 s,
# the limits ~30 s); more when the loop is slower or the lock is held by another benchmark.
#
# Env knobs:
#   LOFTQ_BIN                   loftq binary (default $root/build/loftq); copied once at the start
#   LOFTQ_ROOFLINE_SHAPES       shapes, "ROWSxCOLS ..." (default "5504x2048 4096x4096 11008x4096 28672x8192")
#   LOFTQ_ROOFLINE_REPEATS      runs per shape (default 3)
#   LOFTQ_ROOFLINE_BIG_REPEATS  runs per shape of >= 100 M elements (default 1: 28672x8192 once)
#   LOFTQ_ROOFLINE_THREADS      OMP_NUM_THREADS = OPENBLAS_NUM_THREADS of loftq, and the thread
#                               count whose limits the efficiencies use (default 2 = the cores of
#                               bench/speed_peft.sh; limits are measured at 1 and this count)
#   LOFTQ_ROOFLINE_LIMIT_REPEATS  repeats of each limit measurement (default 5)
#   LOFTQ_ROOFLINE_NOTES        JSON {"ROWSxCOLS/phase" or "*/phase": "why"} for the why column
#                               (default bench/roofline_notes.json: why read, quantize, write and
#                               export stay under 50% of the copy bound)
#   LOFTQ_ROOFLINE_OUT          results folder (default $root/bench/results)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/binary_source.sh
source "$root/bench/binary_source.sh"
bin=${LOFTQ_BIN:-$root/build/loftq}
shapes=${LOFTQ_ROOFLINE_SHAPES:-"5504x2048 4096x4096 11008x4096 28672x8192"}
repeats=${LOFTQ_ROOFLINE_REPEATS:-3}
big_repeats=${LOFTQ_ROOFLINE_BIG_REPEATS:-1}
threads=${LOFTQ_ROOFLINE_THREADS:-2}
limit_repeats=${LOFTQ_ROOFLINE_LIMIT_REPEATS:-5}
notes=${LOFTQ_ROOFLINE_NOTES:-$root/bench/roofline_notes.json}
out=${LOFTQ_ROOFLINE_OUT:-$root/bench/results}
rank=64
iters=5
lock=/tmp/bench.lock

[[ -x "$bin" ]] || { echo "roofline: no loftq binary at $bin (set LOFTQ_BIN)" >&2; exit 2; }
for s in $shapes; do
  [[ "$s" =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "roofline: bad shape '$s' (want ROWSxCOLS)" >&2; exit 2; }
done
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "roofline: bad LOFTQ_ROOFLINE_THREADS" >&2; exit 2; }
blas=$(ldd "$bin" | awk '/libopenblas/ && !f {print $3; f = 1}')  # no early exit: ldd must not get SIGPIPE
[[ -n "$blas" && -f "$blas" ]] || { echo "roofline: $bin links no libopenblas (ldd)" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d /tmp/roofline.XXXXXX)
# Kept when the script fails (the runs can be re-reported: bench/roofline.py report --work DIR).
trap 'rc=$?; if ((rc == 0)); then rm -rf "$work"; else rm -rf "$work/model" "$work/out" "$work/out.run.h5"; echo "roofline: failed; measurements kept in $work" >&2; fi' EXIT
exec > >(tee "$out/roofline.log") 2>&1

bin_src=$(cd "$(dirname "$bin")/.." && pwd)
bin_commit=$(binary_commit "$bin_src")
cp "$bin" "$work/loftq"
bin_sha=$(sha256sum "$work/loftq" | cut -c1-16)
help=$("$work/loftq" run --help 2>&1 || true)
power_iters=$(sed -n 's/.*--power-iters arg (=\([0-9]*\)).*/\1/p' <<<"$help" | head -1)
warm_power_iters=$(sed -n 's/.*--warm-power-iters arg (=\([0-9]*\)).*/\1/p' <<<"$help" | head -1)
machine=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
limit_threads=1
[[ "$threads" != 1 ]] && limit_threads="1,$threads"
echo "roofline: shapes $shapes; r = $rank, T = $iters, loftq at $threads thread(s); limits at $limit_threads"
echo "machine: $machine, $(nproc) cores; loftq $bin (source $bin_src at $bin_commit, sha256 $bin_sha...); BLAS $blas; scripts at $(git -C "$root" rev-parse --short HEAD)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$work/meta.json" <<EOF
import json, sys
json.dump({"shapes": "$shapes".split(), "rank": $rank, "iters": $iters, "threads": $threads,
           "machine": "$machine", "cores": $(nproc), "loftq_binary": "$bin", "loftq_commit": "$bin_commit",
           "loftq_sha256_16": "$bin_sha", "script_commit": "$(git -C "$root" rev-parse --short HEAD)",
           "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "blas": "$blas",
           "power_iters": int("${power_iters:-2}"), "warm_power_iters": int("${warm_power_iters:-0}"),
           "command": "loftq run --model DIR --output OUT --rank $rank --iters $iters --log-json F"},
          open(sys.argv[1], "w"), indent=1)
EOF

for shape in $shapes; do
  rows=${shape%x*}
  cols=${shape#*x}
  n=$repeats
  ((rows * cols >= 100000000)) && n=$big_repeats
  mkdir -p "$work/$shape"
  t0=$EPOCHREALTIME
  /usr/bin/python3 "$root/bench/one_matrix.py" "$work/model" "$rows" "$cols"
  echo "$shape: checkpoint written in $(/usr/bin/python3 -c "print('%.1f' % (${EPOCHREALTIME/,/.} - ${t0/,/.}))") s; $n run(s)"
  for ((i = 1; i <= n; i++)); do
    rm -rf "$work/out" "$work/out.run.h5"
    base=$work/$shape/run_$i
    {
      flock 9
      t0=$EPOCHREALTIME
      OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$work/loftq" run --model "$work/model" \
        --output "$work/out" --rank "$rank" --iters "$iters" --log-json "$base.jsonl" \
        >"$base.out" 2>&1 9>&- || { cat "$base.out"; echo "roofline: loftq run failed on $shape" >&2; exit 1; }
      t1=$EPOCHREALTIME
    } 9>"$lock"
    /usr/bin/python3 -c "print('%.4f' % (${t1/,/.} - ${t0/,/.}))" >"$base.wall"
    /usr/bin/python3 - "$base" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1] + ".jsonl").read().splitlines()[-1])
t = r["times"]
print(f"  run: whole {float(open(sys.argv[1] + '.wall').read()):.3f} s; loop {t['total']:.3f} s = read {t['read']:.3f} "
      f"+ quantize {t['quantize']:.3f} + svd {t['svd']:.3f} + comm {t['comm']:.3f} + write {t['write']:.3f}; "
      f"gemm_passes {r.get('gemm_passes')}, sketch {r.get('sketch')}, loaded_error {r.get('loaded_error'):.6f}")
EOF
    grep -h '^\[loftq\] exported' "$base.out" | sed 's/^/  /'
  done
  rm -rf "$work/model" "$work/out" "$work/out.run.h5"
done

/usr/bin/python3 "$root/bench/roofline.py" limits --work "$work" --blas "$blas" --threads "$limit_threads" \
  --repeats "$limit_repeats" --lock "$lock"
/usr/bin/python3 "$root/bench/roofline.py" report --work "$work" --json "$out/roofline.json" \
  --md "$out/roofline.md" ${notes:+--notes "$notes"}
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
