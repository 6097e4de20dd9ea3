#!/usr/bin/env bash
# Every shell script of the project parses (`bash -n`) and is shellcheck-clean: the Slurm job
# scripts (slurm/), the launchers (launch/), benchmark drivers, test scripts and CI. shellcheck is
# required (launch/setup.sh installs it); a missing one is a failure, not a skip.
set -euo pipefail
src=${LOFTQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
command -v shellcheck >/dev/null || { echo "e2e_shellcheck: FAIL: shellcheck not installed (bash launch/setup.sh)" >&2; exit 1; }
cd "$src"
shopt -s nullglob
scripts=(slurm/*.sbatch slurm/*.sh launch/*.sh bench/*.sh tests/*.sh tests/support/*.sh .ci/run)
((${#scripts[@]} >= 5)) || { echo "e2e_shellcheck: FAIL: only ${#scripts[@]} scripts found under $src" >&2; exit 1; }
bad=0
for f in "${scripts[@]}"; do
  bash -n "$f" || { echo "e2e_shellcheck: $f does not parse" >&2; bad=1; }
done
shellcheck -x --shell=bash --severity=style "${scripts[@]}" || bad=1
((bad == 0)) || { echo "e2e_shellcheck: FAIL" >&2; exit 1; }
echo "e2e_shellcheck: PASS (${#scripts[@]} scripts)"
