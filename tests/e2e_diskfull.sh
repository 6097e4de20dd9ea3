#!/usr/bin/env bash
# A full disk is one clear line, a non-zero exit and nothing left behind: quantize with the run
# file on a 200 KB tmpfs is refused before anything is written (the run file would need ~1 MB),
# and export (run) into a full tmpfs fails naming the file and "No space left on device" and
# removes its temporary folder. A disk filled by someone else after the run file was created
# (a 4 MB tmpfs: data of a run file punched out to holes, then the disk filled) fails the next
# write with "run file X: No space left on device", one line, not HDF5's call text; once space
# is back, --resume completes it to the datasets of an uninterrupted run. Needs to mount a tmpfs
# (root); where it cannot, the test reports Skipped (exit 77).
set -euo pipefail
# shellcheck source=tests/support/e2e_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/support/e2e_common.sh"
mnt=$tmp/full
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=200k tmpfs "$mnt" 2>/dev/null; then
  echo "SKIP e2e_diskfull: cannot mount a tmpfs here (needs root)"
  exit 77
fi
mid=$tmp/mid
mkdir -p "$mid"
mount -t tmpfs -o size=4m tmpfs "$mid" || { umount "$mnt"; fail "a second tmpfs cannot be mounted"; }
trap 'umount "$mnt" "$mid" 2>/dev/null; rm -rf "$tmp"' EXIT
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
# 3. The disk fills up after the run file was created. A complete run file whose matrices are
# zeroed and flagged not done, copied sparse, has its data as holes again: every write of
# --resume needs new blocks. Then another writer fills the disk.
"$bin" quantize --model "$model" --work "$tmp/ref.h5" --rank 8 --iters 1 >/dev/null
cp "$tmp/ref.h5" "$mid/run.h5"
"$py" - "$mid/run.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    f["complete"][...] = 0
    for g in f["matrices"].values():
        for ds in ("codes", "absmax", "A", "B"):
            g[ds][...] = np.zeros(g[ds].shape, g[ds].dtype)
PY
cp --sparse=always "$mid/run.h5" "$mid/sparse.h5" && mv "$mid/sparse.h5" "$mid/run.h5"
printf '%4000s\n' "lock file of a killed job" >"$mid/run.h5.lock"  # its page goes to the new owner line
dd if=/dev/zero of="$mid/filler" bs=4k 2>/dev/null || true
rc=0
out=$("$bin" quantize --model "$model" --work "$mid/run.h5" --rank 8 --iters 1 --resume 2>&1) || rc=$?
((rc != 0)) || fail "quantize with the disk filled mid-run exited 0"
[[ $(grep -c "loftq: error" <<<"$out") -eq 1 && $out == *"run file $mid/run.h5: No space left on device"* &&
   $out != *H5D* ]] || fail "quantize with the disk filled mid-run: $out"
rm "$mid/filler"
"$bin" quantize --model "$model" --work "$mid/run.h5" --rank 8 --iters 1 --resume >/dev/null ||
  fail "--resume after the disk had room again failed"
cmp -s <(digest "$tmp/ref.h5") <(digest "$mid/run.h5") ||
  fail "the resumed run file differs from the uninterrupted one"
ok "a disk filled mid-run: one line naming the run file and 'No space left on device'; --resume completes it"
echo "e2e_diskfull: 3 passed, 0 failed"
