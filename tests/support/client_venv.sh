# shellcheck shell=bash disable=SC2034,SC2154  # sets venv/client_py for, and reads src/test_name of, the script that sources it
# Sourced by the tests that load our output with the real clients (e2e_client.sh, e2e_families.sh):
# finds the client venv (launch/client-venv.sh; tests/client/README.md) and sets $venv and $client_py:
# LOFTQ_CLIENT_VENV, else the machine's (~/.cache/loftq/venv-client), else .venv-client in the
# source tree. With none the test cannot check anything: under CI (CI=true; .ci/run installs the
# venv first) that is a failure (exit 1), elsewhere exit 77, which ctest reports as Skipped.
# Needs $src (the source tree) and $test_name (for the messages).
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
      echo "$test_name: FAIL under CI: $why" >&2
      exit 1
    fi
    echo "SKIP $test_name: $why"
    exit 77
  fi
fi
client_py=$venv/bin/python
[[ -x $client_py ]] || { echo "$test_name: LOFTQ_CLIENT_VENV=$venv has no bin/python" >&2; exit 1; }
