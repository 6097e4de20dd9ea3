# shellcheck shell=bash
# Sourced by the real-client scripts (tests/e2e_client.sh, tests/e2e_merge_client.sh): sets `py`
# to the client venv's python (tests/client/README.md): LOFTQ_CLIENT_VENV, else the machine's
# (~/.cache/loftq/venv-client), else .venv-client in the source tree. With none the script cannot
# check anything: under CI (CI=true; .ci/run installs the venv first) that is a failure, elsewhere
# exit 77, which ctest reports as Skipped (never Passed). $1: the test's name for the messages.
# Needs `src` set.
client_test=$1
src=${src:?client_venv.sh: set src first}
venv=${LOFTQ_CLIENT_VENV:-}
machine_venv=${XDG_CACHE_HOME:-$HOME/.cache}/loftq/venv-client
if [[ -z $venv ]]; then
  if [[ -x $machine_venv/bin/python ]]; then
    venv=$machine_venv
  elif [[ -x $src/.venv-client/bin/python ]]; then
    venv=$src/.venv-client
  else
    why="no client venv (LOFTQ_CLIENT_VENV unset, $machine_venv and $src/.venv-client absent); create it with: bash launch/client-venv.sh (tests/client/README.md)"
    if [[ ${CI:-} == true ]]; then
      echo "$client_test: FAIL under CI: $why" >&2
      exit 1
    fi
    echo "SKIP $client_test: $why"
    exit 77
  fi
fi
py=$venv/bin/python
[[ -x $py ]] || { echo "$client_test: LOFTQ_CLIENT_VENV=$venv has no bin/python" >&2; exit 1; }
