#!/usr/bin/env bash
# Create (or reuse) the "real client" virtual environment: transformers, peft, bitsandbytes,
# safetensors and torch from PyPI at the versions pinned in tests/client/requirements.txt and
# tests/client/constraints.txt, on Debian's Python 3.11 (/usr/bin/python3 -m venv).
# tests/e2e_client.sh loads our outputs with it (tests/client/README.md); .ci/run calls this.
#   LOFTQ_CLIENT_VENV   where (default: ~/.cache/loftq/venv-client, under $XDG_CACHE_HOME when
#                       set: one per machine, so every clone and CI run reuses it). An existing
#                       venv there is reused as it is when it already imports the pinned set;
#                       otherwise the pins are pip-installed into it. It is never deleted.
#   LOFTQ_CLIENT_PYTHON interpreter that creates a new one (default /usr/bin/python3)
# About 3.5 to 4.5 minutes and 5.7 GB the first time (PyPI's torch is the CUDA build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${LOFTQ_CLIENT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/loftq/venv-client}
mkdir -p "$(dirname "$venv")"
python=${LOFTQ_CLIENT_PYTHON:-/usr/bin/python3}
req=$root/tests/client/requirements.txt
con=$root/tests/client/constraints.txt

# "Working" means: the five client packages import (torch needs its nvidia-* libraries for
# that, so a half-installed venv fails here) and every top-level pin of requirements.txt is the
# installed distribution version. A stamp file alone would trust a venv someone broke since.
check_venv() {
  "$venv/bin/python" - "$req" <<'EOF'
import importlib.metadata as md, sys
import torch, transformers, peft, bitsandbytes, safetensors  # noqa: F401  (must import)
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    have = md.version(name)
    if have != want:
        bad.append(f"{name} {have} (pinned {want})")
if bad:
    print("client-venv: not at the pins: " + ", ".join(bad))
    sys.exit(1)
EOF
}

if [[ -x $venv/bin/python ]] && check_venv 2>/dev/null; then
  echo "client-venv: $venv already imports the pinned set; reused as is"
  exit 0
fi
if [[ -e $venv && ! -x $venv/bin/python && -n $(ls -A "$venv" 2>/dev/null) ]]; then
  echo "client-venv: $venv exists but is not a venv (no bin/python); remove it or set LOFTQ_CLIENT_VENV" >&2
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
fi
start=$(date +%s)
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
# --no-cache-dir: the wheels are 3+ GB and a CI clone would not reuse a cache anyway.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir -r "$req" -c "$con"
check_venv
echo "client-venv: $venv ready in $(($(date +%s) - start)) s, $(du -sh "$venv" | cut -f1)"
