// Element types of safetensors checkpoints, and the float16 / bfloat16 <-> float32 conversions.
//
// Widening (bf16/f16 -> f32) is exact. Narrowing rounds to nearest even, as PyTorch's
// `tensor.to(torch.bfloat16)` does; NaN stays NaN.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

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

inline float bf16_to_float(uint16_t h) {
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

inline uint16_t float_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
    const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_float(uint16_t h);
uint16_t float_to_f16(float f);

// Widen `n` elements of a float dtype (F16/BF16/F32, little-endian bytes) into float32.
void widen_to_f32(DType t, const void* src, size_t n, float* dst);
// Narrow float32 to F16/BF16/F32 bytes (round to nearest even).
void narrow_from_f32(DType t, const float* src, size_t n, void* dst);

}  // namespace loftq
