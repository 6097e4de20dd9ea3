// The CUDA quantization op, in one place: the fused kernel (kernels/quantize.cuh) launched on a
// CUDA backend's stream, and the backend's quantize-as-loaded slots (QuantSlots) built on it.
// Plain C++ declarations so that host code and tests compile without CUDA; the definitions
// exist only when LOFTQ_HAVE_CUDA (src/linalg/cuda_quant.cu).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "linalg/backend.hpp"
#include "quant/format.hpp"
#include "quant/quantize.hpp"

namespace loftq {

enum class QuantOutput { None, Dequantized, Residual };

// Device buffers, asynchronous on `stream` (a cudaStream_t, nullptr = default stream). Results
// identical to quantize_ref + pack_codes + dequantize_ref (out = Q, or x - Q for Residual).
// packed: packed_bytes(f, n); scales: block_count(n, bs); out: n floats (unused for None).
void quantize_cuda_device(const QuantFormat& f, int blocksize, const float* x_dev, int64_t n,
                          uint8_t* packed_dev, float* scales_dev, float* out_dev, QuantOutput mode,
                          void* stream);

// True when the kernel implements quantize_as_loaded for (p, backbone): backbones bf16 / fp32 /
// bnb4 without double quantization (bf16: every block of float32-normal magnitude re-quantizes
// exactly, see quantize.cpp, so no settling pass is needed). False also for what
// quantize_as_loaded itself rejects (no format; bnb4 with a LoftQ format).
bool cuda_quant_kernel_supports(const QuantParams& p, Backbone backbone);

// quantize_as_loaded on the device, without validation of the data: the same packed codes,
// absmax and q_loaded as the CPU version where cuda_quant_kernel_supports; NotImplemented for
// fp16 and double quantization, ConfigError for bnb4 with a LoftQ format.
void quantize_cuda_as_loaded_device(const QuantParams& p, Backbone backbone, const float* x_dev,
                                    int64_t n, uint8_t* packed_dev, float* absmax_dev,
                                    float* q_loaded_dev, void* stream);

// Host buffers in and out through the CUDA backend `be` (tests, benchmarks). The parameters are
// checked before `be` is touched.
void quantize_cuda(LinalgBackend& be, const QuantFormat& f, int blocksize, const float* x, int64_t n,
                   uint8_t* packed, float* scales, float* out, QuantOutput mode);
void quantize_cuda_as_loaded(LinalgBackend& be, const QuantParams& p, Backbone backbone, const float* x,
                             int64_t n, uint8_t* packed, float* absmax, float* q_loaded);

// The CUDA backend's QuantSlots: device-resident (two slots of codes, absmax and Q as loaded on
// the device; only the kept codes and absmax cross PCIe, once) where cuda_quant_kernel_supports,
// else the host slots staged through the host (linalg/host_quant.hpp).
std::unique_ptr<QuantSlots> make_cuda_quant_slots(LinalgBackend& be, const QuantParams& p, Backbone backbone,
                                                  size_t n, float* scratch, const std::string& tensor_name);

}  // namespace loftq
