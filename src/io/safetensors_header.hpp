// The JSON header of a safetensors file, checked entry by entry (spec/FORMATS.md section 5):
// an object of tensors plus an optional "__metadata__" {str: str}; each tensor exactly
// {"dtype": known name, "shape": [non-negative integers], "data_offsets": [b, e]} with
// e >= b and e - b == numel * itemsize (overflow-checked). Tiling of the data buffer is checked
// by SafetensorsFile, which knows the file size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.hpp"

namespace loftq {

struct ParsedHeader {
    std::vector<TensorInfo> tensors;  // in header order
    TensorMetadata metadata;
};

// `json` holds the n header bytes (UTF-8, maybe space-padded). Throws InputError naming `file`
// and the tensor.
ParsedHeader parse_safetensors_header(const std::string& file, const unsigned char* json, uint64_t n);

}  // namespace loftq
