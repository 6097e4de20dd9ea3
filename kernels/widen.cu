// Kernels of kernels/widen.cuh: a grid-stride loop, two elements (one 32-bit load) per step where
// the input is 4-byte aligned, since the loop is bound by memory traffic.
#include "kernels/widen.cuh"

#include <cuda_fp16.h>

namespace loftq::kernels {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(size_t work) {
    const size_t b = (work + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

struct Bf16 {
    __device__ static float widen(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
};
struct F16 {
    __device__ static float widen(uint16_t h) { return __half2float(__ushort_as_half(h)); }
};

template <typename D>
__global__ void widen_pairs(const uint32_t* in, float2* out, size_t pairs) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < pairs; i += size_t(gridDim.x) * blockDim.x) {
        const uint32_t v = in[i];  // little endian: element 2i in the low half
        out[i] = make_float2(D::widen(static_cast<uint16_t>(v & 0xffffu)), D::widen(static_cast<uint16_t>(v >> 16)));
    }
}

template <typename D>
__global__ void widen_each(const uint16_t* in, float* out, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        out[i] = D::widen(in[i]);
}

template <typename D>
cudaError_t widen(const uint16_t* in, float* out, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    const bool aligned = reinterpret_cast<uintptr_t>(in) % 4 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
    if (aligned && n >= 2) {
        const size_t pairs = n / 2;
        widen_pairs<D><<<blocks_for(pairs), kThreads, 0, stream>>>(reinterpret_cast<const uint32_t*>(in),
                                                                    reinterpret_cast<float2*>(out), pairs);
        if (n % 2) widen_each<D><<<1, 1, 0, stream>>>(in + n - 1, out + n - 1, 1);
    } else {
        widen_each<D><<<blocks_for(n), kThreads, 0, stream>>>(in, out, n);
    }
    return cudaGetLastError();
}

}  // namespace

cudaError_t widen_bf16(const uint16_t* in, float* out, size_t n, cudaStream_t stream) {
    return widen<Bf16>(in, out, n, stream);
}
cudaError_t widen_f16(const uint16_t* in, float* out, size_t n, cudaStream_t stream) {
    return widen<F16>(in, out, n, stream);
}

}  // namespace loftq::kernels
