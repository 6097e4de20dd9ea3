#!/usr/bin/env bash
# Create (or refresh) the "real client" virtual environment: transformers, peft, bitsandbytes,
# safetensors and torch from PyPI at the versions pinned in tests/client/requirements.txt and
# tests/client/constraints.txt, on Debian's Python 3.11 (/usr/bin/python3 -m venv).
# tests/e2e_client.sh loads our outputs with it (tests/client/README.md).
#   LOFTQ_CLIENT_VENV   where (default: .venv-client in the repository root; git-ignored)
#   LOFTQ_CLIENT_PYTHON interpreter that creates it (default /usr/bin/python3)
# Idempotent: a venv whose pinned set is already installed is left as it is (a stamp file
# records the pins it was built from). About 3.5 minutes and 5.7 GB the first time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${LOFTQ_CLIENT_VENV:-$root/.venv-client}
python=${LOFTQ_CLIENT_PYTHON:-/usr/bin/python3}
req=$root/tests/client/requirements.txt
con=$root/tests/client/constraints.txt
stamp=$venv/.loftq-client-pins

want=$(cat "$req" "$con" | sha256sum | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "client-venv: $venv is up to date"
  exit 0
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
fi
start=$(date +%s)
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --no-cache-dir -r "$req" -c "$con"
"$venv/bin/python" -c 'import torch, transformers, peft, bitsandbytes, safetensors' 2>/dev/null
echo "$want" >"$stamp"
echo "client-venv: $venv ready in $(($(date +%s) - start)) s, $(du -sh "$venv" | cut -f1)"
