// Host side of the CUDA quantization op (see quantize_cuda.hpp).
#include "linalg/quantize_cuda.hpp"

#include <cstring>

#include "core/cuda_check.hpp"
#include "kernels/quantize.cuh"

namespace loftq {
namespace {

QuantKernelArgs kernel_args(const QuantFormat& f, int blocksize) {
    check_blocksize(blocksize);
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


void launch(const QuantKernelArgs& a, const float* x_dev, int64_t n, uint8_t* packed_dev, float* scales_dev,
            float* out_dev, QuantOutput mode, void* stream) {
    launch_quantize_fused(a, x_dev, n, packed_dev, scales_dev, out_dev, fused(mode), static_cast<cudaStream_t>(stream));
    CUDA_CHECK(cudaGetLastError());
}

QuantKernelArgs as_loaded_args(const QuantParams& p, Backbone backbone) {
    if (p.format == nullptr) LOFTQ_THROW(ConfigError, "no quantization format");
    if (backbone == Backbone::FP16 || p.double_quant)
        LOFTQ_THROW(NotImplemented, "CUDA quantize-as-loaded for --backbone ", backbone_name(backbone),
                    p.double_quant ? " with double quantization" : "", ": use the CPU quantize_as_loaded");
    if (backbone == Backbone::BNB4 && !p.format->is_bnb())
        LOFTQ_THROW(ConfigError, "--backbone bnb4 holds only nf4/fp4, not format ", p.format->name);
    QuantKernelArgs a = kernel_args(*p.format, p.blocksize);
    a.bf16_backbone = backbone == Backbone::BF16 ? 1 : 0;
    a.fp4_positive_zero = p.format->family == FormatFamily::BnbFP4 && backbone != Backbone::BNB4 ? 1 : 0;
    return a;
}

// Copies x in, runs `run` on device buffers, copies codes, scales and `out` back.
template <typename Run>
void on_device(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed, float* scales,
               float* out, bool with_out, Run&& run) {
    const size_t bytes = packed_bytes(f, n), blocks = block_count(n, blocksize);
    DeviceBuffer dx(n * sizeof(float)), dp(bytes), ds(blocks * sizeof(float)), dout(with_out ? n * sizeof(float) : 0);
    CUDA_CHECK(cudaMemcpy(dx.p, x, n * sizeof(float), cudaMemcpyHostToDevice));
    run(static_cast<const float*>(dx.p), static_cast<uint8_t*>(dp.p), static_cast<float*>(ds.p),
        with_out ? static_cast<float*>(dout.p) : nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(packed, dp.p, bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(scales, ds.p, blocks * sizeof(float), cudaMemcpyDeviceToHost));
    if (with_out) CUDA_CHECK(cudaMemcpy(out, dout.p, n * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace


void quantize_cuda_device(const QuantFormat& f, int blocksize, const float* x_dev, int64_t n,
                          uint8_t* packed_dev, float* scales_dev, float* out_dev, QuantOutput mode,
                          void* stream) {
    launch(kernel_args(f, blocksize), x_dev, n, packed_dev, scales_dev, out_dev, mode, stream);
}

void quantize_cuda(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
                   float* scales, float* out, QuantOutput mode) {
    on_device(f, blocksize, x, n, packed, scales, out, mode != QuantOutput::None,
              [&](const float* dx, uint8_t* dp, float* ds, float* dout) {
                  quantize_cuda_device(f, blocksize, dx, n, dp, ds, dout, mode, nullptr);
              });
}

void quantize_cuda_as_loaded_device(const QuantParams& p, Backbone backbone, const float* x_dev,
                                    int64_t n, uint8_t* packed_dev, float* absmax_dev,
                                    float* q_loaded_dev, void* stream) {
    launch(as_loaded_args(p, backbone), x_dev, n, packed_dev, absmax_dev, q_loaded_dev, QuantOutput::Dequantized,
           stream);
}

void quantize_cuda_as_loaded(const QuantParams& p, Backbone backbone, const float* x, int64_t n,
                             uint8_t* packed, float* absmax, float* q_loaded) {
    const QuantKernelArgs a = as_loaded_args(p, backbone);
    on_device(*p.format, p.blocksize, x, n, packed, absmax, q_loaded, true,
              [&](const float* dx, uint8_t* dp, float* ds, float* dout) {
                  launch(a, dx, n, dp, ds, dout, QuantOutput::Dequantized, nullptr);
              });
}

}  // namespace loftq
