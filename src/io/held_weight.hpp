// A weight as transformers holds it after loading (spec/FORMATS.md 2, 3), read from an untrusted
// folder: the pieces `loftq verify` and `loftq merge` share.
// - bitsandbytes' serialized 4-bit Linear (P.weight U8 codes, P.weight.absmax, .quant_map, with
//   double quant .nested_absmax / .nested_quant_map, and the quant_state JSON tensor): held as
//   quant_map[code] * absmax, absmax = nested_quant_map[c] * nested_absmax + nested_offset.
// - a 16-bit weight that BitsAndBytesConfig(load_in_4bit=True) re-quantizes at load: cast to the
//   config's torch_dtype, quantized at blocksize 64 (transformers has no other), dequantized.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "io/checkpoint.hpp"
#include "quant/format.hpp"

namespace loftq {

// The quant_state JSON of one serialized 4-bit weight.
struct Bnb4Stored {
    std::string quant_type;  // "nf4" | "fp4"
    int64_t blocksize = 0;
    int64_t rows = 0, cols = 0;
    bool nested = false;
    int64_t nested_blocksize = 0;  // with nested: the absmax codes' block size
    float nested_offset = 0.0f;    // with nested: added back to every decoded absmax
    DType dtype = DType::F32;  // "dtype": what bitsandbytes dequantizes to (the compute dtype)
};

// Whether `name` is a bitsandbytes 4-bit weight of `ck` (it has a quant_state tensor).
bool is_bnb4_weight(const Checkpoint& ck, const std::string& name);
// Whether `name` is one of the component tensors of a 4-bit weight (".absmax", ".quant_map",
// ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__*") of some weight in ck.
bool is_bnb4_component(const Checkpoint& ck, const std::string& name);

// The quant_state of `name`; InputError naming the folder and tensor when it is missing,
// malformed, of an unknown quant_type or a blocksize < 1.
Bnb4Stored read_bnb4_state(const Checkpoint& ck, const std::string& name);
// The held values of `name` (rows * cols float32, row-major) from its codes and absmax with the
// stored maps, exact in float32 (bitsandbytes' dequantize_4bit then rounds them to s.dtype). InputError naming the tensor for a component of the wrong size.
std::vector<float> dequantize_bnb4_weight(const Checkpoint& ck, const std::string& name, const Bnb4Stored& s);

// x quantized with (format, blocksize, double quant) and dequantized: what bitsandbytes holds.
std::vector<float> quantized_as_held(const QuantFormat& f, int blocksize, bool double_quant,
                                     const std::vector<float>& x, const std::string& name);
// transformers casts every floating tensor to torch_dtype (bf16 / fp16 / fp32) at load: v rounded so.
void cast_as_loaded(DType load_dtype, std::vector<float>& v);
// What BitsAndBytesConfig(load_in_4bit=True, quant_type, double quant) holds for the stored
// values: cast to the load dtype (transformers' torch_dtype, bf16 / fp16 / fp32), then
// quantized_as_held at blocksize 64.
std::vector<float> requantized_at_load(std::vector<float> stored, DType load_dtype, const QuantFormat& f,
                                       bool double_quant, const std::string& name);

}  // namespace loftq
