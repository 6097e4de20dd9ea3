// upload_widened (see device_widen.hpp): copy the raw 16-bit elements, widen with
// kernels/widen.cu. The staging buffer is per call: one allocation next to a transfer of the
// whole tensor costs little, and nothing stays allocated between matrices.
#include "linalg/device_widen.hpp"

#include "core/cuda_check.hpp"
#include "core/error.hpp"
#include "kernels/widen.cuh"

namespace loftq {

void upload_widened(LinalgBackend& be, DType dtype, const void* host_raw, size_t n, float* dev_out) {
    if (be.kind() != BackendKind::cuda)
        LOFTQ_THROW(BackendError, "upload_widened needs a CUDA backend, got ", be.name());
    if (n == 0) return;
    if (dtype == DType::F32) {
        be.upload(dev_out, static_cast<const float*>(host_raw), n);
        return;
    }
    if (dtype != DType::BF16 && dtype != DType::F16)
        LOFTQ_THROW(NotImplemented, "upload_widened: dtype ", dtype_name(dtype), " (bf16, f16 or f32 only)");
    auto stream = static_cast<cudaStream_t>(cuda_backend_stream(be));
    DeviceBuffer stage(be, (n + 1) / 2);  // n 16-bit elements in whole floats
    auto* raw = reinterpret_cast<uint16_t*>(stage.get());
    CUDA_CHECK(cudaMemcpyAsync(raw, host_raw, n * sizeof(uint16_t), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(dtype == DType::BF16 ? kernels::widen_bf16(raw, dev_out, n, stream)
                                    : kernels::widen_f16(raw, dev_out, n, stream));
    be.synchronize();  // before `stage` is released and the caller reuses host_raw
}

}  // namespace loftq
