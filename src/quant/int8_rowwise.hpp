// bitsandbytes' LLM.int8 row-wise quantizer (0.50: Int8Params._quantize ->
// int8_vectorwise_quant, threshold 0), what `load_in_8bit` and PEFT's loftq_init(num_bits=8) hold.
// Registry format "int8": one block per ROW, so its blocksize is the row length (the matrix's
// column count, or 1..kMaxInt8RowLength for a flat test vector); codes are int8 bit patterns,
// one byte per element; scales are bitsandbytes' SCB (float32, one per row).
//
// The CPU rule (bitsandbytes/backends/default/ops.py), which this reference follows bit for bit:
//   h = float16(x)                     round to nearest even; |x| >= 65520 becomes Inf: refused
//   SCB = max |h| over the row         exact (an fp16 value), stored float32
//   scale = (1.0f / SCB) * 127.0f      torch computes `127.0 / t` as t.reciprocal() * 127: two
//                                      float32 roundings, not one division (it matters at ties)
//   code = round(float32(h) * scale)   float32 product, round half to even
//   a zero row: 127/0 = Inf, 0 * Inf = NaN, which torch converts to code 0 (SCB 0)
//   dequant: (float32(code) * SCB) * 7.874015718698502e-3f   (int8_vectorwise_dequant)
// The CUDA kernel (csrc/kernels.cu kInt8VectorQuant) takes the same fp16 absmax but its scale is
// __fdividef(127.0f, SCB), an approximate division (2 ulp), and rounds with __float2int_rn: its
// codes can differ from the CPU's only where h * scale lies within a few ulp of a .5 tie (a
// model loaded on a GPU may hold a handful of codes one step away). SCB is identical. We follow
// the CPU rule, which the tests check against bitsandbytes itself.
#pragma once

#include <cstdint>
#include <string>

#include "quant/format.hpp"

namespace loftq {

inline constexpr float kInt8DequantFactor = 7.874015718698502e-3f;  // bnb's 1/127 literal, float32
inline constexpr float kFp16Overflow = 65520.0f;  // the smallest |x| float16() rounds to Inf
inline constexpr int kMaxInt8RowLength = 1 << 20;

// QuantizeRefFn / DequantizeFn of the registry entry (row_length = blocksize).
void int8_quantize_ref(const QuantFormat& f, int row_length, const float* x, int64_t n, uint8_t* codes,
                       float* scb);
void int8_dequantize_ref(const QuantFormat& f, int row_length, const uint8_t* codes, const float* scb,
                         int64_t n, float* out);

// The fast path: the reference per row, rows in parallel (OpenMP); q (n floats) optional.
void int8_quantize_fast(int row_length, const float* x, int64_t n, uint8_t* codes, float* scb, float* q);
void int8_dequantize_fast(int row_length, const uint8_t* codes, const float* scb, int64_t n, float* out);

// Codes of x against given per-row scales: the rule above with SCB = scb[row].
void int8_codes_with_scales(int row_length, const float* x, int64_t n, const float* scb, uint8_t* codes);

// Every element whose float16 magnitude is its row's maximum gets code +-127 (its sign), so
// that it stores +-SCB exactly when SCB was rounded up to a coarser dtype (as loaded, bf16).
void int8_pin_row_maxima(int row_length, const float* x, int64_t n, uint8_t* codes);

// InputError naming the tensor, row and column of the first element that float16 cannot hold
// (|x| >= 65520: bitsandbytes would quantize its row to NaN codes).
void check_int8_input(const float* x, int64_t n, int row_length, const std::string& tensor_name);

// What a 16-bit / float32 backbone exported from (codes, scb) re-quantizes to under
// load_in_8bit: each stored value is store(dequant) (the backbone dtype's rounding), which
// bitsandbytes casts to float16 and quantizes again. Rows whose re-quantization differs are
// replaced by it (returned count); a row that does not settle after that is refused (InputError).
int64_t int8_settle_rows(int row_length, int64_t n, float (*store)(float), uint8_t* codes, float* scb,
                         const std::string& tensor_name);

}  // namespace loftq
