# shellcheck shell=bash
# Sourced by the benchmark scripts that time a loftq binary (speed_peft.sh, roofline.sh):
#   binary_commit DIR   the short commit of the source tree DIR (a build folder's parent), with
#                       "+dirty" when a tracked file outside bench/results/ differs from it (the
#                       binary may then hold uncommitted work; the results the scripts are writing
#                       at that moment do not count), or "unknown" outside a git checkout.
binary_commit() {
  local src=$1 commit
  commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
  if [[ -n "$(git -C "$src" status --porcelain --untracked-files=no -- . ':!bench/results' 2>/dev/null)" ]]; then
    commit+="+dirty"
  fi
  echo "$commit"
}
