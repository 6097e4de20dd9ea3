// Fused quantization kernel: one read of a float32 tensor writes the packed codes, the block
// scales and, optionally, the dequantized Q or the residual x - Q. Only __global__ code and a
// thin launcher: no allocation, no synchronisation (STYLE.md 1). Bit-identical to
// quantize_ref (IEEE reciprocal / division via __frcp_rn / __fdiv_rn, no FMA contraction).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace loftq {

enum class FusedOutput : int { None = 0, Dequantized = 1, Residual = 2 };

// Everything the kernel needs to know about a format, passed by value (param space).
struct QuantKernelArgs {
    int family;       // FormatFamily as int
    int bits;         // 2, 4, 8
    int high_first;   // 1: bitsandbytes nibble order, 0: LoftQ low-bits-first
    int blocksize;    // 32..4096, power of two
    // Quantize as loaded from a bf16 backbone (quant/quantize.hpp): round each block's absmax
    // up to a bf16 value (bnb formats) or round Q to bf16 (LoftQ formats).
    int bf16_backbone;
    int fp4_positive_zero;  // emit code 0 for fp4's -0 (code 8): what a re-quantized -0.0 gives
    float table[256]; // code values (1 << bits used)
};

// Grid: one CUDA block per quantization block, blocksize / 8 threads (8 elements each).
// x: n floats; packed: packed bytes; scales: ceil(n / blocksize); out: n floats or nullptr.
void launch_quantize_fused(const QuantKernelArgs& args, const float* x, int64_t n, uint8_t* packed,
                           float* scales, float* out, FusedOutput mode, cudaStream_t stream);

}  // namespace loftq
