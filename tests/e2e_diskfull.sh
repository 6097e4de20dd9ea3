#!/usr/bin/env bash
# A full disk is one clear line, a non-zero exit and nothing left behind: quantize with the run
# file on a 200 KB tmpfs is refused before anything is written (the run file would need ~1 MB),
# and export (run) into a full tmpfs fails naming the file and "No space left on device" and
# removes its temporary folder. Needs to mount a tmpfs (root); where it cannot, the test reports
# Skipped (exit 77).
set -euo pipefail
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
mnt=$tmp/full
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=200k tmpfs "$mnt" 2>/dev/null; then
  echo "SKIP e2e_diskfull: cannot mount a tmpfs here (needs root)"
  exit 77
fi
trap 'umount "$mnt" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

rc=0
out=$("$bin" quantize --model "$model" --work "$mnt/run.h5" --rank 8 --iters 1 2>&1) || rc=$?
((rc != 0)) || fail "quantize onto a full disk exited 0"
[[ $(grep -c "loftq: error" <<<"$out") -eq 1 && $out == *"run file $mnt/run.h5"*"No space left on device"* ]] ||
  fail "quantize onto a full disk: $out"
[[ -z $(ls -A "$mnt") ]] || fail "quantize onto a full disk left $(ls -A "$mnt")"
ok "a run file the disk cannot hold is refused up front, nothing written"

rc=0
out=$("$bin" run --model "$model" --output "$mnt/out" --work "$tmp/run.h5" --rank 8 --iters 1 2>&1) || rc=$?
((rc != 0)) || fail "export onto a full disk exited 0"
[[ $(grep -c "loftq: error" <<<"$out") -eq 1 && $out == *"No space left on device"* ]] || fail "export onto a full disk: $out"
[[ -z $(ls -A "$mnt") ]] || fail "export onto a full disk left $(ls -A "$mnt")"
"$bin" export --model "$model" --work "$tmp/run.h5" --output "$tmp/out" >/dev/null ||
  fail "the run file of the failed export does not export elsewhere"
ok "an export that fills the disk fails with one line and leaves nothing; its run file is intact"
echo "e2e_diskfull: 2 passed, 0 failed"
