#!/usr/bin/env bash
# Issue #7, point 4: correctness on the GPU. Runs the GPU test binaries (each compares the CUDA
# path with the CPU reference and skips itself without a device) and test_runfile_gpu (the
# stories260K run file from `loftq quantize --device cuda` against `--device cpu`: codes and
# absmax bit-exact at T = 1; at T = 3 the same chosen iterations, errors within 1e-4 and the
# count of differing code bytes printed). No mpirun, no h5py: one process per run (MPI singleton).
#   On the GPU machine: bash .bundle/run.sh check
#   Here (everything skips without a GPU): bash bench/gpu_check.sh
# Writes gpu_check_<device>.log and gpu_check_<device>.json (per binary: exit code, tests run,
# skipped, failed) to $OUTDIR (default: $OUT when set, else bench/results).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${LOFTQ_BUNDLE_BIN:-$root/build/tests}
outdir=${OUTDIR:-${OUT:-$root/bench/results}}
mkdir -p "$outdir"
tests=(test_loftq_device test_quant_cuda test_lowrank_cuda test_widen_cuda mpi_test_lowrank test_runfile_gpu)
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
else
  name="no GPU"
fi
slug=$(echo "$name" | tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9]\+/_/g; s/^_//; s/_$//')
log=$outdir/gpu_check_$slug.log
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exec > >(tee "$log") 2>&1
echo "gpu_check: device '$name', binaries in $bin, commit ${LOFTQ_BUNDLE_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
status=0
for t in "${tests[@]}"; do
  echo "== $t"
  rc=0
  "$bin/$t" --gtest_output="json:$tmp/$t.json" || rc=$?
  echo "$t: exit $rc"
  echo "$rc" > "$tmp/$t.rc"
  ((rc == 0)) || status=1
done
python3 - "$tmp" "$outdir/gpu_check_$slug.json" "$name" "${tests[@]}" <<'PY'
import json, os, sys
tmp, out, name, *tests = sys.argv[1:]
res = {"device": name, "binaries": {}}
for t in tests:
    r = {"exit": int(open(os.path.join(tmp, t + ".rc")).read())}
    p = os.path.join(tmp, t + ".json")
    if os.path.exists(p):
        g = json.load(open(p))
        cases = [c for s in g.get("testsuites", []) for c in s.get("testsuite", [])]
        r["tests"] = len(cases)
        r["skipped"] = sum(1 for c in cases if c.get("result") == "SKIPPED")
        r["failed"] = sum(1 for c in cases if c.get("failures"))
    res["binaries"][t] = r
json.dump(res, open(out, "w"), indent=2)
print(json.dumps(res, indent=1))
PY
echo "gpu_check: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit $status
