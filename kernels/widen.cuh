// Widening of 16-bit checkpoint dtypes to float32 on the device, so that PCIe carries the 2 bytes
// a checkpoint stores per element instead of 4. Exact: every bf16 and fp16 value (subnormals,
// infinities and NaN included) is a float32. Launchers enqueue on `stream`, never allocate or
// synchronise, and return cudaGetLastError().
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace loftq::kernels {

// out[i] = the float32 value of the bf16 (resp. IEEE fp16) bits in[i], i < n.
cudaError_t widen_bf16(const uint16_t* in, float* out, size_t n, cudaStream_t stream);
cudaError_t widen_f16(const uint16_t* in, float* out, size_t n, cudaStream_t stream);

}  // namespace loftq::kernels
