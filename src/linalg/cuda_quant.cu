// The CUDA quantization op and the CUDA backend's quantize-as-loaded slots (see cuda_quant.hpp).
#include "linalg/cuda_quant.hpp"

#include <cmath>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "core/cuda_check.hpp"
#include "kernels/quantize.cuh"
#include "linalg/host_quant.hpp"

namespace loftq {
namespace {

QuantKernelArgs kernel_args(const QuantFormat& f, int blocksize) {
    if (f.is_row_wise())
        LOFTQ_THROW(NotImplemented, "CUDA kernel for the row-wise ", f.name, " format (the backend stages it "
                    "through the host)");
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

void launch(const QuantKernelArgs& a, const float* x_dev, int64_t n, uint8_t* packed_dev, float* scales_dev,
            float* out_dev, QuantOutput mode, void* stream) {
    launch_quantize_fused(a, x_dev, n, packed_dev, scales_dev, out_dev, fused(mode), static_cast<cudaStream_t>(stream));
    CUDA_CHECK(cudaGetLastError());
}

QuantKernelArgs as_loaded_args(const QuantParams& p, Backbone backbone) {
    if (p.format == nullptr) LOFTQ_THROW(ConfigError, "no quantization format");
    if (p.format->loads_through_nf4() || p.format->is_row_wise() || backbone == Backbone::INT8)
        LOFTQ_THROW(NotImplemented, "CUDA quantize-as-loaded kernel for ", p.format->name, " with a ",
                    backbone_name(backbone), " backbone (the backend stages it through the host)");
    if (backbone == Backbone::FP16 || p.double_quant)
        LOFTQ_THROW(NotImplemented, "CUDA quantize-as-loaded kernel for a ", backbone_name(backbone), " backbone",
                    p.double_quant ? " with double quantization" : "", " (the backend stages it through the host)");
    if (backbone == Backbone::BNB4 && !p.format->is_bnb())
        LOFTQ_THROW_SETTING("backbone", "a bnb4 backbone holds only nf4/fp4, not format ", p.format->name);
    QuantKernelArgs a = kernel_args(*p.format, p.blocksize);
    a.bf16_backbone = backbone == Backbone::BF16 ? 1 : 0;
    a.fp4_positive_zero = p.format->family == FormatFamily::BnbFP4 && backbone != Backbone::BNB4 ? 1 : 0;
    return a;
}

// Whole floats holding `bytes` bytes (DeviceBuffer counts floats).
size_t words_for(size_t bytes) { return (bytes + sizeof(float) - 1) / sizeof(float); }

// Packed bytes of a device buffer to the host: one download of whole floats.
void download_bytes(LinalgBackend& be, const DeviceBuffer& src, size_t bytes, uint8_t* host) {
    std::vector<float> words(words_for(bytes));
    be.download(words.data(), src.get(), words.size());
    if (bytes) std::memcpy(host, words.data(), bytes);
}

// Copies x in, runs `run` on device buffers, copies codes, scales and `out` back.
template <typename Run>
void on_device(LinalgBackend& be, const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
               float* scales, float* out, bool with_out, Run&& run) {
    const size_t count = static_cast<size_t>(n);
    const size_t bytes = packed_bytes(f, n), blocks = block_count(n, blocksize);
    DeviceBuffer dx(be, count), dp(be, words_for(bytes)), ds(be, blocks), dout(be, with_out ? count : 0);
    be.upload(dx.get(), x, count);
    run(dx.get(), reinterpret_cast<uint8_t*>(dp.get()), ds.get(), dout.get());
    download_bytes(be, dp, bytes, packed);
    be.download(scales, ds.get(), blocks);
    if (with_out) be.download(out, dout.get(), count);
}

// The device-resident path rejects what the CPU's input check rejects, from the norms it computes
// anyway: a sum of squares in double is finite iff every float32 term is finite.
void require_finite(double v, const std::string& name, const char* what) {
    if (!std::isfinite(v))
        LOFTQ_THROW(InputError, "tensor ", name, ": ", what, " is not finite; weights must be finite "
                    "(and within the backbone's range) to quantize");
}

// Two device slots of one shard: codes, absmax and Q as loaded of the current iterate and of the
// best so far. Every call is ordered on the backend's stream; only the norms (which return to
// the host) and take_best synchronise.
class CudaQuantSlots final : public QuantSlots {
public:
    // Checks what the CPU path checks before touching data (format, blocksize, whole blocks).
    CudaQuantSlots(LinalgBackend& be, const QuantParams& p, Backbone backbone, size_t n, std::string tensor_name)
        : be_(be), p_(p), n_(n), name_(std::move(tensor_name)), stream_(cuda_backend_stream(be)),
          args_(as_loaded_args(p, backbone)), plain_args_(kernel_args(*p.format, p.blocksize)) {
        if (n == 0) LOFTQ_THROW(InputError, "tensor ", name_, ": nothing to quantize (0 elements)");
        if (p.format->needs_full_blocks() && n % static_cast<size_t>(p.blocksize) != 0)
            LOFTQ_THROW(InputError, "tensor ", name_, ": ", n, " elements is not a multiple of blocksize ",
                        p.blocksize, " required by format ", p.format->name);
        packed_bytes_ = static_cast<size_t>(packed_bytes(*p.format, static_cast<int64_t>(n)));
        blocks_ = static_cast<size_t>(block_count(static_cast<int64_t>(n), p.blocksize));
        for (auto& s : slot_) {
            s.packed = DeviceBuffer(be, words_for(packed_bytes_));
            s.absmax = DeviceBuffer(be, blocks_);
            s.loaded = DeviceBuffer(be, n);
        }
    }

    void quantize_current(const float* x) override {
        Slot& s = slot_[cur_];
        launch(args_, x, static_cast<int64_t>(n_), codes(s), s.absmax.get(), s.loaded.get(),
               QuantOutput::Dequantized, stream_);
    }
    const float* current_loaded() override { return slot_[cur_].loaded.get(); }
    void quantize_residual(LinalgBackend& be, const float* w, const float* low, float* res) override {
        quantize_residual_steps(be, *this, n_, w, low, res);
    }
    void keep_current() override { cur_ = 1 - cur_; }  // the slots swap; nothing is copied
    const float* best_loaded() override { return slot_[1 - cur_].loaded.get(); }

    // The residual x - Q_plain(x) goes to the current slot's Q buffer, free until the next
    // quantize_current.
    double plain_error_squared(const float* x) override {
        require_finite(be_.norm2(n_, x), name_, "||W||");
        Slot& s = slot_[cur_];
        launch(plain_args_, x, static_cast<int64_t>(n_), codes(s), s.absmax.get(), s.loaded.get(),
               QuantOutput::Residual, stream_);
        const double qn = be_.norm2(n_, s.loaded.get());
        require_finite(qn, name_, "||W - q(W)||");
        return qn * qn;
    }

    QuantizedTensor take_best() override {
        const Slot& s = slot_[1 - cur_];
        QuantizedTensor q;
        q.format = p_.format;
        q.blocksize = p_.blocksize;
        q.numel = static_cast<int64_t>(n_);
        q.double_quant = false;
        q.packed.resize(packed_bytes_);
        download_bytes(be_, s.packed, packed_bytes_, q.packed.data());
        q.absmax.resize(blocks_);
        be_.download(q.absmax.data(), s.absmax.get(), blocks_);
        return q;
    }

private:
    struct Slot {
        DeviceBuffer packed, absmax, loaded;  // packed: packed bytes, stored in whole floats
    };
    static uint8_t* codes(Slot& s) { return reinterpret_cast<uint8_t*>(s.packed.get()); }

    LinalgBackend& be_;
    QuantParams p_;
    size_t n_;
    std::string name_;
    void* stream_;
    QuantKernelArgs args_, plain_args_;
    size_t packed_bytes_ = 0, blocks_ = 0;
    Slot slot_[2];
    int cur_ = 0;  // slot_[cur_] is written next; slot_[1 - cur_] holds the best kept
};

}  // namespace

void quantize_cuda_device(const QuantFormat& f, int blocksize, const float* x_dev, int64_t n,
                          uint8_t* packed_dev, float* scales_dev, float* out_dev, QuantOutput mode,
                          void* stream) {
    launch(kernel_args(f, blocksize), x_dev, n, packed_dev, scales_dev, out_dev, mode, stream);
}

bool cuda_quant_kernel_supports(const QuantParams& p, Backbone backbone) {
    if (p.format == nullptr || backbone == Backbone::FP16 || p.double_quant) return false;
    // LLM.int8 (and its int8 backbone) is staged through the host: its CPU rule is bitsandbytes'
    // CPU one, exactly (quant/int8_rowwise.hpp); a kernel would need IEEE division to match it.
    if (p.format->is_row_wise() || backbone == Backbone::INT8) return false;
    // NF2 through NF4 rounds its absmax to the backbone and checks every block: staged too.
    if (p.format->loads_through_nf4()) return false;
    return backbone != Backbone::BNB4 || p.format->is_bnb();
}

void quantize_cuda_as_loaded_device(const QuantParams& p, Backbone backbone, const float* x_dev,
                                    int64_t n, uint8_t* packed_dev, float* absmax_dev,
                                    float* q_loaded_dev, void* stream) {
    launch(as_loaded_args(p, backbone), x_dev, n, packed_dev, absmax_dev, q_loaded_dev, QuantOutput::Dequantized,
           stream);
}

void quantize_cuda(LinalgBackend& be, const QuantFormat& f, int blocksize, const float* x, int64_t n,
                   uint8_t* packed, float* scales, float* out, QuantOutput mode) {
    const QuantKernelArgs a = kernel_args(f, blocksize);
    void* stream = cuda_backend_stream(be);
    on_device(be, f, blocksize, x, n, packed, scales, out, mode != QuantOutput::None,
              [&](const float* dx, uint8_t* dp, float* ds, float* dout) {
                  launch(a, dx, n, dp, ds, dout, mode, stream);
              });
}

void quantize_cuda_as_loaded(LinalgBackend& be, const QuantParams& p, Backbone backbone, const float* x,
                             int64_t n, uint8_t* packed, float* absmax, float* q_loaded) {
    const QuantKernelArgs a = as_loaded_args(p, backbone);
    void* stream = cuda_backend_stream(be);
    on_device(be, *p.format, p.blocksize, x, n, packed, absmax, q_loaded, true,
              [&](const float* dx, uint8_t* dp, float* ds, float* dout) {
                  launch(a, dx, n, dp, ds, dout, QuantOutput::Dequantized, stream);
              });
}

std::unique_ptr<QuantSlots> make_cuda_quant_slots(LinalgBackend& be, const QuantParams& p, Backbone backbone,
                                                  size_t n, float* scratch, const std::string& tensor_name) {
    if (cuda_quant_kernel_supports(p, backbone)) return std::make_unique<CudaQuantSlots>(be, p, backbone, n, tensor_name);
    return make_host_quant_slots(be, p, backbone, n, scratch, tensor_name, HostStaging::staged);
}

}  // namespace loftq
