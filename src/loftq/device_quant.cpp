// Device-resident quantization slots of the LoftQ loop (see device_quant.hpp). Plain C++: the
// device work goes through the CUDA quantize op (linalg/quantize_cuda.hpp) and the backend, so
// this file compiles in a build without CUDA, where nothing is supported.
#include "loftq/device_quant.hpp"

#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "linalg/quantize_cuda.hpp"

namespace loftq {

bool device_quant_supported(LinalgBackend& be, const QuantParams& p, Backbone backbone) {
#ifdef LOFTQ_HAVE_CUDA
    if (be.kind() != BackendKind::cuda || p.format == nullptr) return false;
    if (backbone == Backbone::FP16 || p.double_quant) return false;
    if (backbone == Backbone::BNB4 && !p.format->is_bnb()) return false;  // the CPU path rejects it
    return true;
#else
    (void)be, (void)p, (void)backbone;
    return false;
#endif
}

DeviceQuantSlots::DeviceQuantSlots(LinalgBackend& be, const QuantParams& p, Backbone backbone,
                                   size_t n, const std::string& tensor_name)
    : be_(be), p_(p), backbone_(backbone), n_(n) {
    if (!device_quant_supported(be, p, backbone))
        LOFTQ_THROW(NotImplemented, "tensor ", tensor_name, ": device quantization of format ",
                    p.format ? p.format->name : "(none)", " with --backbone ", backbone_name(backbone));
    check_blocksize(p.blocksize);
    if (n == 0) LOFTQ_THROW(InputError, "tensor ", tensor_name, ": nothing to quantize (0 elements)");
    if (p.format->needs_full_blocks() && n % static_cast<size_t>(p.blocksize) != 0)
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": ", n, " elements is not a multiple of blocksize ",
                    p.blocksize, " required by format ", p.format->name);
    packed_bytes_ = static_cast<size_t>(packed_bytes(*p.format, static_cast<int64_t>(n)));
    blocks_ = static_cast<size_t>(block_count(static_cast<int64_t>(n), p.blocksize));
    for (auto& s : slot_) {
        s.packed = DeviceBuffer(be, (packed_bytes_ + sizeof(float) - 1) / sizeof(float));
        s.absmax = DeviceBuffer(be, blocks_);
        s.loaded = DeviceBuffer(be, n);
    }
}

#ifdef LOFTQ_HAVE_CUDA

void DeviceQuantSlots::quantize_current(const float* x_dev) {
    Slot& s = slot_[cur_];
    quantize_cuda_as_loaded_device(p_, backbone_, x_dev, static_cast<int64_t>(n_),
                                   reinterpret_cast<uint8_t*>(s.packed.get()), s.absmax.get(),
                                   s.loaded.get(), cuda_backend_stream(be_));
}

void DeviceQuantSlots::plain_residual(const float* x_dev, float* out_dev) {
    Slot& s = slot_[cur_];
    quantize_cuda_device(*p_.format, p_.blocksize, x_dev, static_cast<int64_t>(n_),
                         reinterpret_cast<uint8_t*>(s.packed.get()), s.absmax.get(), out_dev,
                         QuantOutput::Residual, cuda_backend_stream(be_));
}

#else

void DeviceQuantSlots::quantize_current(const float*) {
    LOFTQ_THROW(NotImplemented, "device quantization in a build without CUDA");
}
void DeviceQuantSlots::plain_residual(const float*, float*) {
    LOFTQ_THROW(NotImplemented, "device quantization in a build without CUDA");
}

#endif

void DeviceQuantSlots::download_best(QuantizedTensor& q) {
    const Slot& s = slot_[1 - cur_];
    q = QuantizedTensor{};
    q.format = p_.format;
    q.blocksize = p_.blocksize;
    q.numel = static_cast<int64_t>(n_);
    q.double_quant = false;
    std::vector<float> words(s.packed.size());
    be_.download(words.data(), s.packed.get(), words.size());
    q.packed.resize(packed_bytes_);
    std::memcpy(q.packed.data(), words.data(), packed_bytes_);
    q.absmax.resize(blocks_);
    be_.download(q.absmax.data(), s.absmax.get(), blocks_);
}

}  // namespace loftq
