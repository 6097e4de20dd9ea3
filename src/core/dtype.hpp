// Element types of safetensors checkpoints, and the float16 / bfloat16 <-> float32 conversions.
//
// The element conversions themselves live in core/half_round.hpp (host and device).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "core/half_round.hpp"  // bf16 / f16 <-> f32, shared with the kernels

namespace loftq {

enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

// Bytes per element.
size_t dtype_size(DType t);
// The safetensors spelling ("BF16", ...).
const char* dtype_name(DType t);
// Parse a safetensors dtype string; nullopt if unknown.
std::optional<DType> parse_dtype(const std::string& s);
// True for the dtypes a weight may be widened from (F16, BF16, F32).
bool is_float_weight_dtype(DType t);

// Widen `n` elements of a float dtype (F16/BF16/F32, little-endian bytes) into float32.
void widen_to_f32(DType t, const void* src, size_t n, float* dst);
// Narrow float32 to F16/BF16/F32 bytes (round to nearest even).
void narrow_from_f32(DType t, const float* src, size_t n, void* dst);

}  // namespace loftq
