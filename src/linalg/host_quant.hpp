// Quantize-as-loaded slots computed on the host with the CPU quantization functions
// (quant/quantize.hpp), for every format, backbone and double quantization.
//
// The CPU backend uses them directly on its (host) memory. The CUDA backend uses them, staged
// through the host, for what its kernels do not implement (fp16 backbone, double quantization):
// download the input, quantize on the host, upload the Q as loaded. That choice is the backend's;
// the LoftQ loop never sees it.
//
// Only the codes of the two iterates are kept; a Q as loaded is built in the caller's scratch
// buffer when asked for (loaded_values gives back exactly what quantize_as_loaded wrote), so the
// slots add no n-float buffer to the loop's memory.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "linalg/backend.hpp"

namespace loftq {

// in_place: x and scratch are host memory (the CPU backend's). staged: they live in be's device
// memory and cross through two host buffers of n floats.
enum class HostStaging { in_place, staged };

std::unique_ptr<QuantSlots> make_host_quant_slots(LinalgBackend& be, const QuantParams& p, Backbone backbone,
                                                  size_t n, float* scratch, const std::string& tensor_name,
                                                  HostStaging staging);

}  // namespace loftq
