#!/usr/bin/env bash
# Build loftq for the lent GPU machine (sm_90: H100 / H200) and collect what it lacks into
# .bundle/ (git-ignored), to be carried to it by the device tool:
#   bash launch/gpu-bundle.sh            # here, once (builds build-gpu/, fills .bundle/)
#   device run, carry [".bundle"]:  bash .bundle/run.sh bench-gpu      (see launch/README-gpu.md)
#
# The GPU machine has the CUDA 13 runtime libraries (/usr/local/cuda), NCCL in PyTorch's pip
# packages, PyTorch, numpy and glibc/libstdc++ at least as new as here; it has no MPI, HDF5,
# Boost, OpenBLAS, LAPACKE. So .bundle/ holds:
#   bin/        loftq, bench_loftq and the GPU test binaries, stripped
#   lib/        every shared library ldd shows for them and for Open MPI's plugins, except glibc,
#               libstdc++/libgcc_s and the CUDA/NCCL libraries
#   openmpi/    Open MPI's plugins (lib/), help texts (share/) and configuration (etc/), found
#               through OPAL_PKGLIBDIR / OPAL_PKGDATADIR / OPAL_SYSCONFDIR (a relocated install)
#   run.sh      the entry point (bundle-run.sh): environment, then a named benchmark or check
# Everything but run.sh is packed into payload.tar.gz (run.sh unpacks it under /tmp) so that the
# bundle stays under the device tool's 64 MiB.
#   LOFTQ_GPU_BUILD   build folder (default build-gpu; `build` reuses the main build if it was
#                     configured for sm_90, which is this repository's default)
#   LOFTQ_BUNDLE      output folder (default .bundle)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOFTQ_GPU_BUILD:-$root/build-gpu}
[[ "$build" = /* ]] || build=$root/$build
bundle=${LOFTQ_BUNDLE:-$root/.bundle}
[[ "$bundle" = /* ]] || bundle=$root/$bundle
targets=(loftq bench_loftq test_loftq_device test_quant_cuda test_lowrank_cuda test_widen_cuda mpi_test_lowrank test_runfile_gpu)

if [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "gpu-bundle: no nvcc at /usr/local/cuda/bin/nvcc: the bundle needs the CUDA build" >&2
  exit 2
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOFTQ_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$build" -j "${LOFTQ_JOBS:-2}" --target "${targets[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,lib,openmpi/lib,openmpi/share,openmpi/etc}
for t in "${targets[@]}"; do
  src=$(find "$build" -maxdepth 2 -type f -name "$t" -perm -u+x | head -1)
  [[ -n "$src" ]] || { echo "gpu-bundle: $t was not built in $build" >&2; exit 1; }
  cp "$src" "$stage/bin/$t"
done

# Open MPI's run-time pieces (the paths `ompi_info --path all` reports).
ompi_path() { ompi_info --path all | sed -n "s/^ *$1: //p" | head -1; }
pkglib=$(ompi_path Pkglibdir); pkgdata=$(ompi_path Pkgdatadir); sysconf=$(ompi_path Sysconfdir)
cp "$pkglib"/*.so "$stage/openmpi/lib/"
cp -r "$pkgdata"/. "$stage/openmpi/share/"
cp -r "$sysconf"/. "$stage/openmpi/etc/"

# Shared libraries: everything the binaries and plugins resolve, except what the GPU machine has.
keep_out='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libutil\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcublasLt|libcusolver|libcusparse|libcurand|libcufft|libnvJitLink|libnccl|libnvidia)'
missing=$( { for f in "$stage"/bin/* "$stage"/openmpi/lib/*.so; do ldd "$f" || true; done; } |
           awk '/not found/ {print $1}' | sort -u)
if [[ -n "$missing" ]]; then echo "gpu-bundle: unresolved here: $missing" >&2; fi
{ for f in "$stage"/bin/* "$stage"/openmpi/lib/*.so; do ldd "$f" 2>/dev/null || true; done; } |
  awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r soname path; do
    [[ "$soname" =~ $keep_out ]] && continue
    [[ -e "$stage/lib/$soname" ]] || cp -L "$path" "$stage/lib/$soname"
  done
chmod u+w "$stage"/bin/* "$stage"/lib/* "$stage"/openmpi/lib/*
strip --strip-unneeded "$stage"/bin/* "$stage"/lib/* "$stage"/openmpi/lib/* 2>/dev/null || true

commit=$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src kernels bench tests || echo "-dirty")
{
  echo "commit $commit"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
  echo "cuda $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') sm_90"
  (cd "$stage" && find . -type f | sort | xargs du -b | awk '{printf "%10d %s\n", $1, $2}')
} > "$stage/MANIFEST"

rm -rf "$bundle"
mkdir -p "$bundle"
tar -C "$stage" -czf "$bundle/payload.tar.gz" .
cp "$stage/MANIFEST" "$bundle/MANIFEST"
cp "$root/launch/bundle-run.sh" "$bundle/run.sh"
size=$(du -sb "$bundle" | cut -f1)
echo "gpu-bundle: $bundle: $((size / 1048576)) MiB packed ($(du -sb "$stage" | cut -f1 | awk '{printf "%d", $1 / 1048576}') MiB unpacked), commit $commit"
if ((size > 60 * 1048576)); then
  echo "gpu-bundle: the bundle is over 60 MiB: the device tool carries at most 64 MiB with the tree" >&2
  exit 1
fi
