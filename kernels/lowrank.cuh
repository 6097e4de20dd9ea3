// Kernels of the CUDA linear-algebra backend (src/linalg/cuda_backend.cu): sketch generation and
// the small element-wise helpers cuBLAS lacks. Launchers enqueue on `stream`, never allocate or
// synchronise, and return cudaGetLastError().
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace loftq::kernels {

// out[i] = philox::gaussian(key(seed, name_hash), offset + i), bit-equal to the CPU backend.
cudaError_t fill_gaussian(uint64_t seed, uint64_t name_hash, uint64_t offset, size_t n, float* out,
                          cudaStream_t stream);
// out[j] = entry of largest |.| in column j of row-major A (m x k, ld lda), first on ties.
cudaError_t column_absmax(int64_t m, int64_t k, const float* a, int64_t lda, float* out,
                          cudaStream_t stream);
// a[i, j] *= scale[j] (by_columns) or scale[i]; scale is a device array.
cudaError_t scale(int64_t m, int64_t n, float* a, int64_t lda, const float* scale, bool by_columns,
                  cudaStream_t stream);
// Zero the strictly lower triangle of row-major k x k R.
cudaError_t keep_upper(int64_t k, float* r, cudaStream_t stream);
// partials[b] = sum of x[i]^2 over the i of block b (double); `blocks` partials.
cudaError_t sum_squares(size_t n, const float* x, double* partials, int blocks, cudaStream_t stream);
// y[i] += alpha * x[i] (no FMA contraction differences: one multiply-add per element, same bits
// for any launch shape).
cudaError_t axpy(size_t n, float alpha, const float* x, float* y, cudaStream_t stream);

}  // namespace loftq::kernels
