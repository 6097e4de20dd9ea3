// Host side of the CUDA quantization op (see quantize_cuda.hpp).
#include "quant/quantize_cuda.hpp"

#include <cstring>

#include "core/cuda_check.hpp"
#include "kernels/quantize.cuh"

namespace loftq {
namespace {

QuantKernelArgs kernel_args(const QuantFormat& f, int blocksize) {
    QuantKernelArgs a{};
    a.family = static_cast<int>(f.family);
    a.bits = f.bits;
    a.high_first = f.packing == Packing::HighFirst ? 1 : 0;
    a.blocksize = blocksize;
    std::memcpy(a.table, f.table, sizeof(float) * f.table_size());
    return a;
}

FusedOutput fused(QuantOutput m) {
    return m == QuantOutput::Dequantized ? FusedOutput::Dequantized
           : m == QuantOutput::Residual  ? FusedOutput::Residual
                                         : FusedOutput::None;
}

// Device memory released on scope exit, so a failed check leaks nothing.
struct DeviceBuffer {
    void* p = nullptr;
    explicit DeviceBuffer(size_t bytes) { CUDA_CHECK(cudaMalloc(&p, bytes > 0 ? bytes : 1)); }
    ~DeviceBuffer() { cudaFree(p); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace

int cuda_device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return count;
}

void quantize_cuda_device(const QuantFormat& f, int blocksize, const float* x_dev, int64_t n,
                          uint8_t* packed_dev, float* scales_dev, float* out_dev, QuantOutput mode,
                          void* stream) {
    check_blocksize(blocksize);
    launch_quantize_fused(kernel_args(f, blocksize), x_dev, n, packed_dev, scales_dev, out_dev, fused(mode),
                          static_cast<cudaStream_t>(stream));
    CUDA_CHECK(cudaGetLastError());
}

void quantize_cuda(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
                   float* scales, float* out, QuantOutput mode) {
    const size_t bytes = packed_bytes(f, n), blocks = block_count(n, blocksize);
    DeviceBuffer dx(n * sizeof(float)), dp(bytes), ds(blocks * sizeof(float)),
        dout(mode == QuantOutput::None ? 0 : n * sizeof(float));
    CUDA_CHECK(cudaMemcpy(dx.p, x, n * sizeof(float), cudaMemcpyHostToDevice));
    quantize_cuda_device(f, blocksize, static_cast<const float*>(dx.p), n, static_cast<uint8_t*>(dp.p),
                         static_cast<float*>(ds.p), mode == QuantOutput::None ? nullptr : static_cast<float*>(dout.p),
                         mode, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(packed, dp.p, bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(scales, ds.p, blocks * sizeof(float), cudaMemcpyDeviceToHost));
    if (mode != QuantOutput::None)
        CUDA_CHECK(cudaMemcpy(out, dout.p, n * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace loftq
