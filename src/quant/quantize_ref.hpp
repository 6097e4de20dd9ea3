// The readable CPU reference of every format: quantize, dequantize, pack, unpack, and
// bitsandbytes' double quantization of the absmax. Plain loops, one element at a time; the fast
// path (quantize_fast.hpp) and the CUDA kernel (kernels/quantize.cuh) must match it bit for bit.
//
// Layout: x is the row-major flattened tensor, n elements; block b covers
// [b * blocksize, min(n, (b + 1) * blocksize)). Inputs are assumed finite and validated
// (check_quant_input); the reference itself never throws on values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/format.hpp"

namespace loftq {

// Per block: scales[b] = absmax (bnb, LoftQ normal) or f32(mean) + 2.5f * f32(unbiased std)
// (LoftQ uniform; mean and std summed in double, each rounded once to float32); codes[i] is the
// code of x[i] (one byte per element). An all-zero block gets code 0 everywhere.
void quantize_ref(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* codes,
                  float* scales);
// The scale of one block of len elements (the rule quantize_ref uses).
float block_scale_ref(const QuantFormat& f, const float* x, int64_t len);
// out[i] = table[codes[i]] * scales[block of i], in float32. (int8: both dispatch to
// int8_rowwise.hpp, so that every format goes through these two.)
void dequantize_ref(const QuantFormat& f, int blocksize, const uint8_t* codes, const float* scales,
                    int64_t n, float* out);

// The code bitsandbytes writes in the unused low nibble when n is odd: its kernel quantizes a
// padding 0.0f with the last block's scale (nf4: 7, or 0 when that block is all zero; fp4: 0).
uint8_t bnb_pad_code(const QuantFormat& f, float last_absmax);
// Pack n one-byte codes into packed_bytes(f, n) bytes in the format's order.
void pack_codes(const QuantFormat& f, const uint8_t* codes, int64_t n, uint8_t pad_code,
                uint8_t* packed);
void unpack_codes(const QuantFormat& f, const uint8_t* packed, int64_t n, uint8_t* codes);

// bitsandbytes double quantization of a float32 absmax vector (bnb_4bit_use_double_quant):
// offset = mean(absmax) (summed in double, rounded to float32), then absmax - offset (float32)
// is quantized in blocks of 256 with the signed dynamic map, nearest value by dQuantize<0>.
struct DoubleQuant {
    static constexpr int kBlocksize = 256;
    std::vector<uint8_t> codes;         // one per absmax entry
    std::vector<float> nested_absmax;   // one per 256 entries
    float offset = 0.0f;                // nested_offset
};
DoubleQuant double_quantize_ref(const float* absmax, int64_t count);
// The absmax bitsandbytes dequantizes with: map[code] * nested_absmax + offset (float32).
void double_dequantize_ref(const DoubleQuant& dq, int64_t count, float* absmax);

// Rejects what no format accepts, with one line naming the tensor: a bad blocksize
// (ConfigError), n <= 0, NaN or Inf, n not a multiple of the blocksize for LoftQ formats and
// int8, an element float16 cannot hold for int8 (InputError).
void check_quant_input(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                       const std::string& tensor_name);

}  // namespace loftq
