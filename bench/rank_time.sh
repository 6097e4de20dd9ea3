#!/usr/bin/env bash
# Per-rank wrapper for LOFTQ_RANK_WRAPPER (launch/mpirun.sh): runs the rank under /usr/bin/time -v
# and writes its report to $LOFTQ_RANK_TIME_DIR/time.rank<world rank>.
#   LOFTQ_RANK_TIME_DIR=/tmp/x LOFTQ_RANK_WRAPPER=bench/rank_time.sh launch/mpirun.sh -np 2 quantize ...
set -euo pipefail
dir=${LOFTQ_RANK_TIME_DIR:?bench/rank_time.sh: set LOFTQ_RANK_TIME_DIR}
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${SLURM_PROCID:-0}}}
exec /usr/bin/time -v -o "$dir/time.rank$rank" "$@"
