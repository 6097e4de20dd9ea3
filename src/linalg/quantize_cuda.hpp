// The CUDA quantization op: allocates, copies and launches the fused kernel
// (kernels/quantize.cuh). Plain C++ declarations so that host code and tests compile without
// CUDA; the definitions exist only when LOFTQ_HAVE_CUDA (src/quant/quantize_cuda.cu).
#pragma once

#include <cstdint>

#include "linalg/backend.hpp"  // cuda_device_count()
#include "quant/format.hpp"
#include "quant/quantize.hpp"

namespace loftq {

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

// quantize_as_loaded on the device, without validation: the same packed codes, absmax and
// q_loaded as the CPU version for backbones bf16 / fp32 / bnb4 without double quantization
// (bf16: every block of float32-normal magnitude re-quantizes exactly, see quantize.cpp, so no
// settling pass is needed). fp16 and double_quant throw NotImplemented.
void quantize_cuda_as_loaded_device(const QuantParams& p, Backbone backbone, const float* x_dev,
                                    int64_t n, uint8_t* packed_dev, float* absmax_dev,
                                    float* q_loaded_dev, void* stream);
// Host buffers in and out (tests).
void quantize_cuda_as_loaded(const QuantParams& p, Backbone backbone, const float* x, int64_t n,
                             uint8_t* packed, float* absmax, float* q_loaded);

}  // namespace loftq
