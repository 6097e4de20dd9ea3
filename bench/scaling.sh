#!/usr/bin/env bash
# Scaling study of `loftq quantize` on this machine: strong scaling (a fixed synthetic model at
# several rank counts) and weak scaling (decoder layers proportional to ranks), one mpirun per
# point, each with its per-matrix --log-json log and its measured wall time. The analyser
# bench/scaling_report.py then writes bench/results/scaling_cpu.csv and the PNG plots.
#   usage: bench/scaling.sh
# Settings (environment, all optional):
#   LOFTQ_SCALING_PRESET   synth preset                     default llama2-7b
#   LOFTQ_SCALING_RANKS    rank counts                      default "1 2 4"
#   LOFTQ_SCALING_STRONG   layers of the strong-scaling model   default 2
#   LOFTQ_SCALING_WEAK     layers per rank (weak scaling)   default 1
#   LOFTQ_SCALING_ARGS     quantize options                 default "--rank 16 --iters 1 --svd randomized"
#   LOFTQ_SCALING_THREADS  threads per rank                 default launch/mpirun.sh's max(1, cores / N)
#   LOFTQ_SCALING_OUT      study folder                     default bench/results/scaling_cpu
#                          (the CSV is <study>.csv, the plots go into the study folder)
# The study folder has the layout of slurm/scaling-study.sbatch (one folder r<R>-l<L> per point
# with point.json and log.jsonl), plus stdout.log and the wall time in point.json, so that the
# same analyser reads a cluster study. More ranks than cores run oversubscribed: point.json and
# the CSV say so. The run files and models live in a temporary folder, deleted at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${LOFTQ_BINARY:-$root/build/loftq}
preset=${LOFTQ_SCALING_PRESET:-llama2-7b}
read -r -a ranks <<<"${LOFTQ_SCALING_RANKS:-1 2 4}"
strong=${LOFTQ_SCALING_STRONG:-2}
weak=${LOFTQ_SCALING_WEAK:-1}
read -r -a qargs <<<"${LOFTQ_SCALING_ARGS:---rank 16 --iters 1 --svd randomized}"
# Before OMP_NUM_THREADS is set below: GNU nproc reports min(cores, OMP_NUM_THREADS).
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
if [[ -n "${LOFTQ_SCALING_THREADS:-}" ]]; then
  [[ "$LOFTQ_SCALING_THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "scaling.sh: LOFTQ_SCALING_THREADS must be a positive integer" >&2; exit 2; }
  export OMP_NUM_THREADS=$LOFTQ_SCALING_THREADS OPENBLAS_NUM_THREADS=$LOFTQ_SCALING_THREADS
fi
study=${LOFTQ_SCALING_OUT:-$root/bench/results/scaling_cpu}
[[ -x "$bin" ]] || { echo "scaling.sh: $bin not built; run: bash launch/setup.sh" >&2; exit 2; }
for r in "${ranks[@]}"; do
  [[ "$r" =~ ^[1-9][0-9]*$ ]] || { echo "scaling.sh: LOFTQ_SCALING_RANKS: '$r' is not a positive integer" >&2; exit 2; }
done

if ! /usr/bin/python3 -c 'import numpy, matplotlib' 2>/dev/null; then
  echo "scaling.sh: installing python3-numpy and python3-matplotlib for the report" >&2
  sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get install -y -q python3-numpy python3-matplotlib >/dev/null ||
    { echo "scaling.sh: cannot install python3-matplotlib; install it and rerun" >&2; exit 2; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/loftq-scaling.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rm -rf "$study.tmp"
mkdir -p "$study.tmp"
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)

# Points: strong = (r, strong layers) for every r; weak = (r, weak * r) for every r.
points=()
for r in "${ranks[@]}"; do points+=("$r:$strong"); done
for r in "${ranks[@]}"; do
  p="$r:$((weak * r))"
  [[ " ${points[*]} " == *" $p "* ]] || points+=("$p")
done

for p in "${points[@]}"; do
  r=${p%%:*} l=${p##*:}
  model=$tmp/model-l$l
  if [[ ! -d "$model" ]]; then
    "$bin" synth --preset "$preset" --layers "$l" --output "$model" >/dev/null
  fi
  dir=$study.tmp/r$r-l$l
  mkdir -p "$dir"
  cmd=(bash "$root/launch/mpirun.sh" -np "$r" quantize --model "$model" --work "$tmp/run-r$r-l$l.h5"
       "${qargs[@]}" --log-json "$dir/log.jsonl")
  echo "scaling.sh: $r ranks, $preset $l layers$( ((r > cores)) && echo ", OVERSUBSCRIBED ($r ranks on $cores cores)")${OMP_NUM_THREADS:+, $OMP_NUM_THREADS threads per rank}"
  t0=$(date +%s.%N)
  "${cmd[@]}" >"$dir/stdout.log" 2>&1 || { echo "scaling.sh: point r$r-l$l failed; see $dir/stdout.log" >&2; tail -5 "$dir/stdout.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  rm -f "$tmp/run-r$r-l$l.h5"
  wall=$(/usr/bin/python3 -c "print(round($t1 - $t0, 3))")
  over=false; ((r > cores)) && over=true
  threads=${OMP_NUM_THREADS:-$(( cores / r ))}; ((threads >= 1)) || threads=1
  ((r * threads > cores)) && over=true
  printf '{"job": "local", "ranks": %d, "layers": %d, "model": "synth %s --layers %d", "wall_s": %s, "cores": %d, "threads_per_rank": %d, "oversubscribed": %s, "machine": "%s", "git_commit": "%s", "command": "%s"}\n' \
    "$r" "$l" "$preset" "$l" "$wall" "$cores" "$threads" "$over" "$cpu" "$commit" \
    "launch/mpirun.sh -np $r quantize --model <synth $preset --layers $l> ${qargs[*]} --log-json log.jsonl" >"$dir/point.json"
  echo "scaling.sh:   wall $wall s"
done

rm -rf "$study"
mv "$study.tmp" "$study"
/usr/bin/python3 "$root/bench/scaling_report.py" "$study" --csv "$study.csv" --plots "$study"
