// Upload a tensor in its checkpoint dtype and widen it to float32 on the device (issue #7: the
// rank reads its tensors and widens them on the GPU, so PCIe carries 2 bytes per bf16/fp16
// element instead of 4). Plain C++ declarations; defined only when LOFTQ_HAVE_CUDA
// (src/linalg/device_widen.cu).
//
// Not yet called by the quantize driver: TensorSource hands out host float32 rows today. The
// intended use: read the raw bytes, upload_widened into a device buffer, and pass it to
// run_loftq_sharded with ShardInput::in_backend_memory (any format and backbone).
#pragma once

#include <cstddef>

#include "core/dtype.hpp"
#include "linalg/backend.hpp"

namespace loftq {

// dev_out (n floats in be's device memory) = the float32 values of host_raw (n elements of
// dtype BF16, F16 or F32, little endian). Asynchronous on the backend's stream except for the
// staging copy, which returns when host_raw may be reused. be must be a CUDA backend
// (BackendError otherwise); another dtype throws NotImplemented.
void upload_widened(LinalgBackend& be, DType dtype, const void* host_raw, size_t n, float* dev_out);

}  // namespace loftq
