#!/usr/bin/env bash
# A test double of the loftq command line for tests/e2e_slurm.sh, used ONLY until `loftq quantize`,
# `export` and `verify` are implemented; it lets the Slurm test exercise slurm/loftq.sbatch's
# machinery (steps under srun, resume, requeue, signal forwarding) today. It follows the contract
# the script relies on (DESIGN.md "Command line"), with a fake computation:
#   quantize --model M --work W [--resume] ...   "matrices" m00..m(N-1) shared round-robin by the
#       ranks (SLURM_PROCID of SLURM_NTASKS); each takes LOFTQ_STANDIN_SECONDS (0.4) and appends
#       "name digest" to W (digest: of M/config.json, the name and the options). --resume skips
#       the names already in W; without it an existing W is an error. On SIGTERM a rank finishes
#       its current matrix and exits 143, as the real job is to.
#   export --work W --model M --output O [--backbone B] [--overwrite]   rank 0 writes O (via a
#       temporary folder renamed into place) from a complete W; an incomplete W is an error.
#   verify --model M --output O --json J   rank 0 checks O holds every matrix once, writes J.
#   --help   the usage, printed by rank 0 only.
# N = LOFTQ_STANDIN_MATRICES (default 12).
set -euo pipefail

rank=${SLURM_PROCID:-0}
size=${SLURM_NTASKS:-1}
count=${LOFTQ_STANDIN_MATRICES:-12}
seconds=${LOFTQ_STANDIN_SECONDS:-0.4}
fail() { echo "loftq-standin: error: $*" >&2; exit 2; }

cmd=${1:-}
shift || true
declare -A opt=()
while (($#)); do
  case "$1" in
    --resume | --overwrite) opt[${1#--}]=1; shift ;;
    --*) (($# >= 2)) || fail "option $1 needs a value"; opt[${1#--}]=$2; shift 2 ;;
    *) fail "unexpected argument '$1'" ;;
  esac
done

digest() {  # digest NAME: what the "matrix" NAME quantizes to under these options
  { cat "${opt[model]}/config.json"; echo "$1 ${opt[bits]:-4} ${opt[rank]:-64} ${opt[iters]:-5} ${opt[backbone]:-bf16}"; } |
    sha256sum | cut -c1-16
}
names() { local i; for ((i = 0; i < count; i++)); do printf 'm%02d\n' "$i"; done; }

case "$cmd" in
  --help)
    if ((rank == 0)); then echo "usage: loftq-standin quantize|export|verify (test double of loftq)"; fi ;;
  quantize)
    work=${opt[work]:?--work}
    [[ -r "${opt[model]:?--model}/config.json" ]] || fail "${opt[model]}/config.json not readable"
    if ((rank == 0)) && [[ -s "$work" && -z "${opt[resume]:-}" ]]; then fail "$work exists; pass --resume"; fi
    stop=0
    trap 'stop=1' TERM
    i=0
    while read -r name; do
      if ((i++ % size == rank)) && ! grep -qx "$name .*" "$work" 2>/dev/null; then
        sleep "$seconds" &
        wait $! || wait $! || true
        line="$name $(digest "$name")"
        flock "$work.lock" -c "echo '$line' >>'$work'"
      fi
      if ((stop)); then echo "loftq-standin: rank $rank stopped by SIGTERM" >&2; exit 143; fi
    done < <(names) ;;
  export)
    ((rank == 0)) || exit 0
    work=${opt[work]:?--work} out=${opt[output]:?--output}
    [[ $(sort -u "$work" | wc -l) -eq $count ]] || fail "$work is incomplete"
    [[ ! -e "$out" || -n "${opt[overwrite]:-}" ]] || fail "$out exists"
    rm -rf "$out.tmp"
    mkdir "$out.tmp"
    sort -u "$work" >"$out.tmp/adapter.txt"
    echo "${opt[backbone]:-bf16}" >"$out.tmp/backbone.txt"
    rm -rf "$out"
    mv "$out.tmp" "$out" ;;
  verify)
    ((rank == 0)) || exit 0
    out=${opt[output]:?--output}
    [[ "$(cut -d' ' -f1 "$out/adapter.txt")" == "$(names)" ]] || fail "$out/adapter.txt: wrong matrices"
    echo "{\"matrices\": $count, \"ok\": true}" >"${opt[json]:?--json}.tmp"
    mv "${opt[json]}.tmp" "${opt[json]}" ;;
  *) fail "unknown command '$cmd'" ;;
esac
