// Quantization that stays in device memory during the LoftQ loop on the CUDA backend: the
// packed codes, the absmax and the Q as loaded of two iterates (the current one and the best so
// far) live on the device, and only the best iterate's codes and absmax cross PCIe, once, at the
// end of the matrix. Same codes, absmax and Q as quantize_as_loaded on the CPU (the kernel is
// bit-identical to quantize_ref, see quantize_cuda.hpp).
//
// Supported: a CUDA backend with backbone bf16 / fp32 / bnb4 and no double quantization
// (what quantize_cuda_as_loaded_device implements). Anything else keeps the host-staged path.
#pragma once

#include <cstdint>
#include <string>

#include "linalg/backend.hpp"
#include "quant/quantize.hpp"

namespace loftq {

// True when `be` is a CUDA backend of this build and (p, backbone) runs on the device.
bool device_quant_supported(LinalgBackend& be, const QuantParams& p, Backbone backbone);

// Two device slots of one matrix shard of n elements. All calls are ordered on the backend's
// stream; none synchronises except download_best.
class DeviceQuantSlots {
public:
    // Checks what the CPU path checks before touching data (format, blocksize, whole blocks).
    DeviceQuantSlots(LinalgBackend& be, const QuantParams& p, Backbone backbone, size_t n,
                     const std::string& tensor_name);

    // The current slot's codes, absmax and Q as loaded = quantize_as_loaded(x); x_dev: n floats.
    void quantize_current(const float* x_dev);
    const float* current_loaded() const { return slot_[cur_].loaded.get(); }
    const float* best_loaded() const { return slot_[1 - cur_].loaded.get(); }
    // The current iterate becomes the best one (the slots swap; nothing is copied).
    void keep_current() { cur_ = 1 - cur_; }

    // out_dev = x - Q_plain(x), the plain quantization QLoRA loads (no backbone rounding);
    // overwrites the current slot's codes.
    void plain_residual(const float* x_dev, float* out_dev);

    // The best slot as a QuantizedTensor (one download of codes and absmax).
    void download_best(QuantizedTensor& q);

private:
    struct Slot {
        DeviceBuffer packed, absmax, loaded;  // packed: packed bytes, stored in whole floats
    };
    LinalgBackend& be_;
    QuantParams p_;
    Backbone backbone_;
    size_t n_;
    size_t packed_bytes_, blocks_;
    Slot slot_[2];
    int cur_ = 0;  // slot_[cur_] is written next; slot_[1 - cur_] holds the best kept
};

}  // namespace loftq
