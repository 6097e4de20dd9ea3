#!/usr/bin/env bash
# Entry point of the GPU bundle (copied to .bundle/run.sh by launch/gpu-bundle.sh). On the GPU
# machine, from the repository root the device tool runs in:
#   bash .bundle/run.sh check        GPU tests + the stories260K run file, CUDA against CPU
#   bash .bundle/run.sh bench-gpu    bench/gpu.sh: LoftQ loop per shape, TF32 check, PEFT peer,
#                                    70B projection, end-to-end llama2-70b --layers 2
#   bash .bundle/run.sh bench-only   the same without the end-to-end run
#   bash .bundle/run.sh e2e-70b      only the end-to-end run
#   bash .bundle/run.sh exec CMD...  any command in the bundle's environment (e.g. exec loftq --help)
# Results go to $OUT when set (the device tool brings them back), else bench/results/.
# One rank, no mpirun: Open MPI starts as an isolated singleton from the bundle's relocated copy.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
mode=${1:?usage: bash .bundle/run.sh check|bench-gpu|bench-only|e2e-70b|exec CMD...}
shift

# Unpack once per payload (keyed by its checksum).
sum=$(cksum < "$here/payload.tar.gz" | cut -d' ' -f1)
b=${TMPDIR:-/tmp}/loftq-bundle-$sum
if [[ ! -x "$b/bin/loftq" ]]; then
  rm -rf "$b.partial" && mkdir -p "$b.partial"
  tar -C "$b.partial" -xzf "$here/payload.tar.gz"
  rm -rf "$b" && mv "$b.partial" "$b"
fi

# CUDA from the toolkit, NCCL (and anything else missing) from PyTorch's nvidia pip packages.
nv_libs=$(python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
    print(":".join(sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib")))))
except Exception:
    pass
PY
)
export LD_LIBRARY_PATH="$b/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${nv_libs:+:$nv_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$b/bin:$PATH"
export OPAL_PKGLIBDIR=$b/openmpi/lib OPAL_PKGDATADIR=$b/openmpi/share OPAL_SYSCONFDIR=$b/openmpi/etc
export OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LOFTQ_BINARY=$b/bin/loftq LOFTQ_SOURCE_DIR=$root LOFTQ_TEST_DATA=$root/tests/data
export LOFTQ_BUNDLE_BIN=$b/bin
LOFTQ_BUNDLE_COMMIT=$(sed -n 's/^commit //p' "$here/MANIFEST" 2>/dev/null || true)
export LOFTQ_BUNDLE_COMMIT
if ldd "$b/bin/loftq" | grep -q "not found"; then
  echo "bundle: libraries missing on this machine:" >&2
  ldd "$b/bin/loftq" | grep "not found" >&2
  exit 3
fi

case "$mode" in
  check)      exec bash "$root/bench/gpu_check.sh" "$@" ;;
  bench-gpu)  exec bash "$root/bench/gpu.sh" all "$@" ;;
  bench-only) exec bash "$root/bench/gpu.sh" bench "$@" ;;
  e2e-70b)    exec bash "$root/bench/gpu.sh" e2e "$@" ;;
  exec)       exec "$@" ;;
  *) echo "bundle: unknown mode '$mode' (check | bench-gpu | bench-only | e2e-70b | exec CMD...)" >&2; exit 2 ;;
esac
