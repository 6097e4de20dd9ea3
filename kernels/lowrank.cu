#include "kernels/lowrank.cuh"

#include "core/philox.hpp"

namespace loftq::kernels {
namespace {

constexpr int kThreads = 256;

int blocks_for(size_t n) {
    const size_t b = (n + kThreads - 1) / kThreads;
    return static_cast<int>(b < 65535 * 8 ? (b == 0 ? 1 : b) : 65535 * 8);
}

__global__ void fill_gaussian_kernel(philox::Key key, uint64_t offset, size_t n, float* out) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        out[i] = philox::gaussian(key, offset + i);
}

__global__ void column_absmax_kernel(int64_t m, const float* a, int64_t lda, float* out) {
    const int64_t j = blockIdx.x;
    __shared__ float best_v[kThreads];
    __shared__ int64_t best_i[kThreads];
    float v = 0.0f;
    int64_t idx = -1;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        const float x = a[i * lda + j];
        if (idx < 0 || fabsf(x) > fabsf(v)) { v = x; idx = i; }
    }
    best_v[threadIdx.x] = v;
    best_i[threadIdx.x] = idx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float ov = best_v[threadIdx.x + s];
            const int64_t oi = best_i[threadIdx.x + s];
            const float mv = best_v[threadIdx.x];
            const int64_t mi = best_i[threadIdx.x];
            const bool take = oi >= 0 && (mi < 0 || fabsf(ov) > fabsf(mv) ||
                                          (fabsf(ov) == fabsf(mv) && oi < mi));
            if (take) { best_v[threadIdx.x] = ov; best_i[threadIdx.x] = oi; }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[j] = best_i[0] < 0 ? 0.0f : best_v[0];
}

__global__ void scale_kernel(int64_t m, int64_t n, float* a, int64_t lda, const float* sc, bool by_columns) {
    const size_t total = size_t(m) * n;
    for (size_t t = blockIdx.x * size_t(blockDim.x) + threadIdx.x; t < total; t += size_t(gridDim.x) * blockDim.x) {
        const int64_t i = int64_t(t / n), j = int64_t(t % n);
        a[i * lda + j] *= by_columns ? sc[j] : sc[i];
    }
}

__global__ void keep_upper_kernel(int64_t k, float* r) {
    const size_t total = size_t(k) * k;
    for (size_t t = blockIdx.x * size_t(blockDim.x) + threadIdx.x; t < total; t += size_t(gridDim.x) * blockDim.x)
        if (int64_t(t % k) < int64_t(t / k)) r[t] = 0.0f;
}

__global__ void sum_squares_kernel(size_t n, const float* x, double* partials) {
    __shared__ double acc[kThreads];
    double s = 0;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        s += double(x[i]) * x[i];
    acc[threadIdx.x] = s;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (threadIdx.x < h) acc[threadIdx.x] += acc[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = acc[0];
}

__global__ void axpy_kernel(size_t n, float alpha, const float* x, float* y) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}

}  // namespace

cudaError_t fill_gaussian(uint64_t seed, uint64_t name_hash, uint64_t offset, size_t n, float* out,
                          cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    fill_gaussian_kernel<<<blocks_for(n), kThreads, 0, stream>>>(philox::make_key(seed, name_hash),
                                                                 offset, n, out);
    return cudaGetLastError();
}

cudaError_t column_absmax(int64_t m, int64_t k, const float* a, int64_t lda, float* out,
                          cudaStream_t stream) {
    if (k == 0) return cudaSuccess;
    column_absmax_kernel<<<static_cast<unsigned>(k), kThreads, 0, stream>>>(m, a, lda, out);
    return cudaGetLastError();
}

cudaError_t scale(int64_t m, int64_t n, float* a, int64_t lda, const float* sc, bool by_columns,
                  cudaStream_t stream) {
    if (m == 0 || n == 0) return cudaSuccess;
    scale_kernel<<<blocks_for(size_t(m) * n), kThreads, 0, stream>>>(m, n, a, lda, sc, by_columns);
    return cudaGetLastError();
}

cudaError_t keep_upper(int64_t k, float* r, cudaStream_t stream) {
    if (k == 0) return cudaSuccess;
    keep_upper_kernel<<<blocks_for(size_t(k) * k), kThreads, 0, stream>>>(k, r);
    return cudaGetLastError();
}

cudaError_t sum_squares(size_t n, const float* x, double* partials, int blocks, cudaStream_t stream) {
    sum_squares_kernel<<<blocks, kThreads, 0, stream>>>(n, x, partials);
    return cudaGetLastError();
}

cudaError_t axpy(size_t n, float alpha, const float* x, float* y, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    axpy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, alpha, x, y);
    return cudaGetLastError();
}

}  // namespace loftq::kernels
