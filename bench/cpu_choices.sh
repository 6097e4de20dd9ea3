#!/usr/bin/env bash
# Two build/run-time choices of the CPU path, each measured against its alternative in the same
# run (issue #15), on the one-matrix case of bench/speed_peft.sh (5504 x 2048, NF4, r 64, T 5):
#  1. MPI start-up of a process no launcher started: loftq's singleton defaults (src/cli/main.cpp)
#     against Open MPI's own (LOFTQ_MPI_SINGLETON_DEFAULTS=0): `loftq inspect` of a tiny folder,
#     which is almost nothing but MPI_Init + MPI_Finalize, and the whole `loftq run`.
#  2. OpenBLAS: the OpenMP build the project links (CMakeLists.txt) against Debian's default
#     pthread build (a second CPU build with -DLOFTQ_OPENBLAS_OPENMP=OFF in build-pthread/, made
#     here when missing: ~6 minutes), per phase of the loop (--log-json times).
#  3. When LOFTQ_CUDA_BIN (default build/loftq) is a build linked to the CUDA libraries: its
#     start-up (`loftq inspect` of the tiny folder) against the CPU build's, on this machine
#     without a GPU (the dynamic loader maps and relocates cuBLAS and cuSOLVER before main).
# Median of LOFTQ_CHOICES_REPEATS (default 5) runs each, interleaved. Writes
# bench/results/cpu_choices.{md,json,log}. About 8 minutes with the extra build, 1 without.
# Do not run it beside a build or another benchmark (2 shared cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${LOFTQ_BIN:-$root/build/loftq}
alt_build=${LOFTQ_PTHREAD_BUILD:-$root/build-pthread}
repeats=${LOFTQ_CHOICES_REPEATS:-5}
out=$root/bench/results
work=$(mktemp -d /tmp/loftq-choices.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

if [[ ! -x $alt_build/loftq ]]; then
  echo "cpu_choices: building the pthread-OpenBLAS variant in $alt_build"
  cmake -S "$root" -B "$alt_build" -DCMAKE_BUILD_TYPE=Release -DLOFTQ_CUDA=OFF -DLOFTQ_OPENBLAS_OPENMP=OFF \
    -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$alt_build" -j "$(nproc)" --target loftq >/dev/null
fi
alt=$alt_build/loftq
cuda_bin=${LOFTQ_CUDA_BIN:-$root/build/loftq}
ldd "$cuda_bin" 2>/dev/null | grep -q libcudart || cuda_bin=
ldd "$bin" | grep -q openblas-openmp || { echo "cpu_choices: $bin is not linked to the OpenMP OpenBLAS" >&2; exit 1; }
ldd "$alt" | grep -q openblas-openmp && { echo "cpu_choices: $alt is linked to the OpenMP OpenBLAS" >&2; exit 1; }

/usr/bin/python3 "$root/bench/one_matrix.py" "$work/one" 5504 2048
/usr/bin/python3 "$root/bench/one_matrix.py" "$work/tiny" 64 64

/usr/bin/python3 - "$bin" "$alt" "$work" "$repeats" "$out" "$root" "$cuda_bin" <<'PY' 2>&1 | tee "$out/cpu_choices.log.tmp"
import json, os, shutil, statistics, subprocess, sys, time
binary, alt, work, repeats, out, root, cuda_bin = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]

def wall(cmd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t

def run_one(b, env=None):
    o = os.path.join(work, "out")
    shutil.rmtree(o, ignore_errors=True)
    for f in (o + ".run.h5", os.path.join(work, "log.jsonl")):
        if os.path.exists(f): os.remove(f)
    w = wall([b, "run", "--model", os.path.join(work, "one"), "--output", o, "--rank", "64", "--iters", "5",
              "--log-json", os.path.join(work, "log.jsonl")], env)
    rec = json.load(open(os.path.join(work, "log.jsonl")))
    return w, rec["times"]

off = dict(os.environ, LOFTQ_MPI_SINGLETON_DEFAULTS="0")
res = {"inspect_defaults": [], "inspect_openmpi": [], "run_defaults": [], "run_openmpi": [],
       "openmp": [], "pthread": [], "inspect_cuda_build": []}
for _ in range(repeats):
    if cuda_bin:
        res["inspect_cuda_build"].append(wall([cuda_bin, "inspect", os.path.join(work, "tiny")]))
    res["inspect_defaults"].append(wall([binary, "inspect", os.path.join(work, "tiny")]))
    res["inspect_openmpi"].append(wall([binary, "inspect", os.path.join(work, "tiny")], off))
    res["run_defaults"].append(run_one(binary)[0])
    res["run_openmpi"].append(run_one(binary, off)[0])
    res["openmp"].append(run_one(binary))
    res["pthread"].append(run_one(alt))
med = lambda xs: statistics.median(xs)
phase = lambda runs, k: med([t[k] for _, t in runs])
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name"))
lines = [f"# CPU choices (bench/cpu_choices.sh, commit {commit}, {cpu}, {os.cpu_count()} cores, median of {repeats})", "",
         "## MPI start-up of a process no launcher started", "",
         "| | loftq's singleton defaults | Open MPI's defaults (LOFTQ_MPI_SINGLETON_DEFAULTS=0) |", "|---|---:|---:|",
         f"| `loftq inspect` of a 64x64 folder (s) | {med(res['inspect_defaults']):.3f} | {med(res['inspect_openmpi']):.3f} |",
         f"| `loftq run`, 5504x2048, r 64, T 5 (s) | {med(res['run_defaults']):.3f} | {med(res['run_openmpi']):.3f} |", "",
         "## OpenBLAS build (same run, phases from --log-json)", "",
         "| phase (s) | OpenMP OpenBLAS (linked) | pthread OpenBLAS (Debian default) |", "|---|---:|---:|"]
for k in ("read", "quantize", "svd", "write", "total"):
    lines.append(f"| {k} | {phase(res['openmp'], k):.3f} | {phase(res['pthread'], k):.3f} |")
lines.append(f"| whole process | {med([w for w, _ in res['openmp']]):.3f} | {med([w for w, _ in res['pthread']]):.3f} |")
if cuda_bin:
    lines += ["", "## A build linked to CUDA, on this machine without a GPU", "",
              "| | CPU build | CUDA build (" + cuda_bin + ") |", "|---|---:|---:|",
              f"| `loftq inspect` of a 64x64 folder (s) | {med(res['inspect_defaults']):.3f} | {med(res['inspect_cuda_build']):.3f} |"]
text = "\n".join(lines) + "\n"
print(text)
json.dump({"commit": commit, "cpu": cpu, "repeats": repeats, "raw": res}, open(os.path.join(out, "cpu_choices.json.tmp"), "w"), indent=1)
open(os.path.join(out, "cpu_choices.md.tmp"), "w").write(text)
PY
for f in md json log; do mv "$out/cpu_choices.$f.tmp" "$out/cpu_choices.$f"; done
echo "cpu_choices: wrote $out/cpu_choices.{md,json,log}"
