# shellcheck shell=bash disable=SC2034  # (variables for the scripts that source this file)
# Sourced by the end-to-end scripts (tests/e2e_*.sh): the environment ctest gives them, a
# temporary folder removed at exit, and the helpers they share. Not a test itself.
#   E2E_MPI_TIMEOUT  seconds an `mpi` call may take (default 300)
bin=${LOFTQ_BINARY:?}
src=${LOFTQ_SOURCE_DIR:?}
data=${LOFTQ_TEST_DATA:?}
py=/usr/bin/python3  # Debian's, with numpy and h5py
model=$data/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
mpi() {  # mpi NP loftq-args...
  local np=$1
  shift
  LOFTQ_BINARY=$bin timeout "${E2E_MPI_TIMEOUT:-300}" bash "$src/launch/mpirun.sh" -np "$np" "$@"
}
# One SHA-256 per deterministic dataset of a run file (tests/runfile_digest.py): equal digests,
# equal results.
digest() { "$py" "$src/tests/runfile_digest.py" "$1"; }
# One SHA-256 per file of an exported folder but report.json (it holds timings).
folder_digest() { (cd "$1" && find . -type f ! -name report.json -print0 | sort -z | xargs -0 sha256sum); }
