#!/usr/bin/env bash
# Per-rank wrapper for LOFTQ_RANK_WRAPPER (launch/mpirun.sh): runs the rank under /usr/bin/time -v
# (report in $LOFTQ_RANK_TIME_DIR/time.rank<world rank>) and samples its /proc status every
# 0.2 s, keeping the peaks of the anonymous (heap) and file-backed (mapped checkpoint) parts of
# the resident set, which /usr/bin/time reports only as one sum (status.rank<world rank>, kB).
#   LOFTQ_RANK_TIME_DIR=/tmp/x LOFTQ_RANK_WRAPPER=bench/rank_time.sh launch/mpirun.sh -np 2 quantize ...
set -uo pipefail
dir=${LOFTQ_RANK_TIME_DIR:?bench/rank_time.sh: set LOFTQ_RANK_TIME_DIR}
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${SLURM_PROCID:-0}}}
/usr/bin/time -v -o "$dir/time.rank$rank" "$@" &
timer=$!
anon=0 file=0 both=0
while kill -0 "$timer" 2>/dev/null; do
  for child in $(pgrep -P "$timer"); do
    read -r a f < <(awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print a + 0, f + 0}' "/proc/$child/status" 2>/dev/null || echo 0 0)
    ((a > anon)) && anon=$a
    ((f > file)) && file=$f
    ((a + f > both)) && both=$((a + f))
  done
  sleep 0.2
done
wait "$timer"
rc=$?
printf 'max_rss_anon_kb %d\nmax_rss_file_kb %d\nmax_rss_anon_plus_file_kb %d\n' "$anon" "$file" "$both" >"$dir/status.rank$rank"
exit "$rc"
