// Fused quantization kernel (see quantize.cuh).
#include "kernels/quantize.cuh"

#include "core/half_round.hpp"
#include "quant/format_tables.hpp"

namespace loftq {
namespace {

constexpr int kPerThread = 8;
// FormatFamily values (quant/format.hpp), repeated here to keep the kernel free of host headers.
constexpr int kBnbNF4 = 0, kBnbFP4 = 1, kLoftqUniform = 3;

__device__ uint8_t element_code(int family, const float* table, int size, float x, float scale, float recip) {
    if (family == kBnbNF4) return nf4_code(__fmul_rn(x, recip));
    if (family == kBnbFP4) return fp4_code(__fmul_rn(x, recip));
    return nearest_code(table, size, __fdiv_rn(x, scale));
}

__global__ void quantize_fused_kernel(QuantKernelArgs args, const float* __restrict__ x, int64_t n,
                                      uint8_t* __restrict__ packed, float* __restrict__ scales,
                                      float* __restrict__ out, int mode) {
    __shared__ float table[256];
    __shared__ unsigned int absmax_bits;
    __shared__ float block_scale;
    const int size = 1 << args.bits;
    for (int i = threadIdx.x; i < size; i += blockDim.x) table[i] = args.table[i];
    if (threadIdx.x == 0) absmax_bits = 0u;
    __syncthreads();

    const int64_t begin = static_cast<int64_t>(blockIdx.x) * args.blocksize;
    const int64_t len = min(static_cast<int64_t>(args.blocksize), n - begin);
    const int64_t first = begin + static_cast<int64_t>(threadIdx.x) * kPerThread;
    float v[kPerThread];
    unsigned int local = 0u;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
        v[j] = first + j < n ? x[first + j] : 0.0f;
        local = max(local, __float_as_uint(v[j]) & 0x7fffffffu);  // integer order = |float| order
    }
    atomicMax(&absmax_bits, local);
    __syncthreads();

    if (threadIdx.x == 0) {
        if (args.family == kLoftqUniform) {
            // Sequential double sums in the reference's order: the scale must match bit for bit.
            double sum = 0;
            for (int64_t i = 0; i < len; ++i) sum += x[begin + i];
            const double mean = sum / static_cast<double>(len);
            double sq = 0;
            for (int64_t i = 0; i < len; ++i) {
                const double d = x[begin + i] - mean;
                sq = __dadd_rn(sq, __dmul_rn(d, d));  // no FMA: the reference rounds twice
            }
            const float sd = static_cast<float>(sqrt(sq / static_cast<double>(len - 1)));
            block_scale = __fadd_rn(static_cast<float>(mean), __fmul_rn(2.5f, sd));
        } else {
            unsigned int a = absmax_bits;
            // The smallest bf16 >= a (a >= 0): truncate to bf16, step up one if that lost bits.
            if (args.bf16_backbone && args.family <= kBnbFP4 && (a & 0xffffu) != 0u) a = (a & 0xffff0000u) + 0x10000u;
            block_scale = __uint_as_float(a);
        }
        scales[blockIdx.x] = block_scale;
    }
    __syncthreads();
    const float scale = block_scale;
    const float recip = __frcp_rn(scale);

    uint8_t c[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
        c[j] = element_code(args.family, table, size, v[j], scale, recip);
        if (args.fp4_positive_zero && c[j] == 8) c[j] = 0;
        if (first + j < n && mode != 0) {
            float q = __fmul_rn(table[c[j]], scale);
            if (args.bf16_backbone && args.family > kBnbFP4) q = round_to_bf16(q);  // core/half_round.hpp, as the CPU
            out[first + j] = mode == 1 ? q : __fsub_rn(v[j], q);
        }
    }
    // Pack: 8 elements -> 8 / per_byte bytes, at byte offset first / per_byte.
    const int per_byte = 8 / args.bits;
    for (int k = 0; k < kPerThread / per_byte; ++k) {
        const int64_t e = first + k * per_byte;
        if (e >= n) break;
        unsigned int byte = 0;
        for (int j = 0; j < per_byte; ++j) {
            const unsigned int code = c[k * per_byte + j];
            byte |= args.high_first ? code << (4 * (1 - j)) : code << (j * args.bits);
        }
        packed[e / per_byte] = static_cast<uint8_t>(byte);
    }
}

}  // namespace

void launch_quantize_fused(const QuantKernelArgs& args, const float* x, int64_t n, uint8_t* packed,
                           float* scales, float* out, FusedOutput mode, cudaStream_t stream) {
    const int64_t blocks = (n + args.blocksize - 1) / args.blocksize;
    if (blocks == 0) return;
    quantize_fused_kernel<<<static_cast<unsigned int>(blocks), args.blocksize / kPerThread, 0, stream>>>(
        args, x, n, packed, scales, out, static_cast<int>(mode));
}

}  // namespace loftq
