// The CUDA quantization op: allocates, copies and launches the fused kernel
// (kernels/quantize.cuh). Plain C++ declarations so that host code and tests compile without
// CUDA; the definitions exist only when LOFTQ_HAVE_CUDA (src/quant/quantize_cuda.cu).
#pragma once

#include <cstdint>

#include "quant/format.hpp"

namespace loftq {

// Number of usable CUDA devices; 0 when there is none or the runtime fails.
int cuda_device_count();

enum class QuantOutput { None, Dequantized, Residual };

// Host buffers in and out; results identical to quantize_ref + pack_codes + dequantize_ref
// (out = Q, or x - Q for Residual). packed: packed_bytes(f, n); scales: block_count(n, bs);
// out: n floats (unused for None). Throws BackendError on CUDA failures.
void quantize_cuda(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
                   float* scales, float* out, QuantOutput mode);

// Device buffers, asynchronous on `stream` (a cudaStream_t, nullptr = default stream).
void quantize_cuda_device(const QuantFormat& f, int blocksize, const float* x_dev, int64_t n,
                          uint8_t* packed_dev, float* scales_dev, float* out_dev, QuantOutput mode,
                          void* stream);

}  // namespace loftq
